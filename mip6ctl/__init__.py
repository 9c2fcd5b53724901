"""mip6ctl: Mobile IPv6 for Linux as a declarative configuration and reconciliation controller."""

__version__ = "0.1.0.dev0"
