"""Automatic keying with strongSwan's charon (RFC 4877), driven over VICI.

Two modules:

* `mip6ctl.ike.swanctl` -- pure: a configuration generation (plus the
  addresses only the running node knows: the HA's own address, the MN's
  care-of address) -> one swanctl connection per mobile node, as the dicts
  VICI's ``load-conn``/``load-shared`` take and as swanctl.conf text for
  humans.  Pre-shared keys are read from ``psk_file`` (mode 0600) and only
  ever shown as fingerprints.
* `mip6ctl.ike.vici_client` -- a small driver around the ``vici`` package
  (imported lazily): load, initiate, terminate, list SAs, and the MIGRATE
  fallback (terminate + initiate from the new care-of address).

mip6ctl owns the kernel XFRM policies (``policies = no`` in every child) and
fixes the reqids, so the policies rendered by `mip6ctl.state` and the SAs
charon negotiates meet whatever the start order.  Movement reaches charon
through XFRM_MSG_MIGRATE with XFRMA_KMADDRESS (`XfrmSocket.migrate`); see
docs/ike.md for what charon does and does not follow.
"""
