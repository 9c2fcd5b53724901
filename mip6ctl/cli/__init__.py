"""The mip6ctl command."""
