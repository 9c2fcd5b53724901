#!/usr/bin/python
# Copyright: mip6ctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/gpl-2.0.txt)
#
# Ansible wants DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

DOCUMENTATION = r"""
---
module: info
short_description: Status of the running mip6ctl daemon (mip6ctl status)
version_added: "0.1.0"
description:
  - Runs C(mip6ctl status --json) on the managed host and returns the daemon's status
    document with role, generation (content hash of the configuration it runs), conditions,
    counters, binding cache, and on a mobile node its binding update list.
  - Never changes anything; fails when no daemon answers on I(socket).
options:
  timeout:
    description:
      - Seconds the mip6ctl invocation may take.
    type: int
    default: 60
attributes:
  check_mode:
    description: Runs in check mode too (it only reads).
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
seealso:
  - module: mip6.mip6ctl.config
  - module: mip6.mip6ctl.apply
extends_documentation_fragment:
  - mip6.mip6ctl.mip6ctl
author:
  - mip6ctl developers
"""

EXAMPLES = r"""
- name: Read the daemon's status
  mip6.mip6ctl.info:
  register: mip6

- name: Wait until the daemon runs the configuration just installed
  mip6.mip6ctl.info:
  register: mip6
  until: mip6.generation == mip6_config.generation
  retries: 10
  delay: 1

- name: Fail unless the daemon is ready
  ansible.builtin.assert:
    that: mip6.ready
"""

RETURN = r"""
status:
  description: The C(mip6ctl status --json) document, unchanged.
  returned: success
  type: dict
generation:
  description: Content hash of the configuration generation the daemon runs.
  returned: success
  type: str
  sample: sha256:24f3a4cf0abe06ee840ebacb485789c66f0eb937b0ff666c42f92c2fa7ee9a99
role:
  description: C(ha), C(mn) or C(cn).
  returned: success
  type: str
ready:
  description: The C(Ready) condition is C(True).
  returned: success
  type: bool
conditions:
  description: The conditions by type (C(status), C(reason), C(message), ...).
  returned: success
  type: dict
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mip6.mip6ctl.plugins.module_utils.mip6ctl import (
    COMMON_ARGS,
    resolve_mip6ctl,
    run_mip6ctl,
)


def main():
    module = AnsibleModule(
        argument_spec={
            **COMMON_ARGS,
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    sock = module.params["socket"]
    exe = resolve_mip6ctl(module)
    argv = [exe, "status", "--socket", sock, "--json"]
    rc, doc, out, err = run_mip6ctl(module, argv)
    if rc != 0 or doc is None or not doc.get("ok", False):
        errors = (doc or {}).get("errors") or []
        why = "; ".join(e.get("message", "") for e in errors) or (err or out).strip()
        module.fail_json(
            msg=f"no mip6ctl daemon answers on {sock}: {why or f'exit {rc}'}",
            rc=rc,
            errors=errors,
            cmd=argv,
        )
    conditions = {c.get("type"): c for c in doc.get("conditions") or [] if isinstance(c, dict)}
    module.exit_json(
        changed=False,
        status=doc,
        generation=doc.get("generation"),
        role=doc.get("role"),
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        conditions=conditions,
    )


if __name__ == "__main__":
    main()
