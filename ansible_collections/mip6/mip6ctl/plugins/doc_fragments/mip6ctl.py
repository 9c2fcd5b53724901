"""The options every mip6.mip6ctl module has: how to find mip6ctl and its daemon."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  socket:
    description:
      - Control socket of the daemon (C(mip6ctl --socket)).
    type: path
    default: /run/mip6/control.sock
  mip6ctl_path:
    description:
      - The mip6ctl command, a name looked up on C(PATH) or a path.
    type: path
    default: mip6ctl
requirements:
  - mip6ctl on the managed host
"""
