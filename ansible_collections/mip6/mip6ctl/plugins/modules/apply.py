#!/usr/bin/python
# Copyright: mip6ctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/gpl-2.0.txt)
#
# Ansible wants DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

DOCUMENTATION = r"""
---
module: apply
short_description: Converge the kernel to the mip6ctl configuration (mip6ctl apply)
version_added: "0.1.0"
description:
  - Runs C(mip6ctl apply -c DIR --json) on the managed host. mip6ctl plans the kernel
    changes the configuration needs (routes, rules, proxy neighbours, tunnels, XFRM,
    nf_tables, sysctls), executes them make-before-break and reads the kernel back.
  - When a daemon answers on I(socket), the apply goes through it (its reload path; the
    plan includes its live bindings). Without a daemon mip6ctl converges the static state
    only (what the configuration alone requires) and leaves binding objects alone.
  - RV(changed) is the document's C(changed), true exactly when a kernel object was
    changed.
  - In check mode it runs C(mip6ctl apply --check --json) instead, which changes nothing;
    its exit code 2 means changes are pending (reported as changed), not a failure.
  - Runs on the managed host and needs mip6ctl there; it never calls C(ip).
options:
  dir:
    description:
      - The configuration directory (C(mip6ctl -c)).
    type: path
    default: /etc/mip6
  confirm_timeout:
    description:
      - Passed as C(--confirm-timeout SECONDS) (needs the daemon and a mip6ctl that has
        the option); the daemon goes back to the running generation unless
        C(mip6ctl confirm) arrives within that many seconds.
      - Not passed in check mode, where nothing is applied.
    type: float
  config_result:
    description:
      - The registered result of a M(mip6.mip6ctl.config) task that runs before this one
        on the same directory.
      - Only used in check mode, and only when that task reported changes. Then I(dir)
        still holds the old files (or does not exist yet), so C(apply --check) there
        would answer the wrong question; the module reports that task's RV(plan) instead
        (the plan of the staged new files) and runs nothing.
    type: dict
  timeout:
    description:
      - Seconds the mip6ctl invocation may take.
    type: int
    default: 120
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction.
    support: full
  diff_mode:
    description: Returns the plan as a text section in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
notes:
  - Changing kernel state needs root (CAP_NET_ADMIN).
seealso:
  - module: mip6.mip6ctl.config
  - module: mip6.mip6ctl.info
extends_documentation_fragment:
  - mip6.mip6ctl.mip6ctl
author:
  - mip6ctl developers
"""

EXAMPLES = r"""
- name: Install the configuration
  mip6.mip6ctl.config:
    files: "{{ mip6_files }}"
    exclusive: true
  register: mip6_config

- name: Converge the kernel
  mip6.mip6ctl.apply:
    dir: /etc/mip6
    # in check mode: report the plan of the files the task above would install
    config_result: "{{ mip6_config }}"
  register: mip6_apply

- name: Show what changed
  ansible.builtin.debug:
    msg: "{{ mip6_apply.plan | map(attribute='summary') | list }}"
  when: mip6_apply is changed

- name: Apply with an automatic rollback unless confirmed within 60 s
  mip6.mip6ctl.apply:
    confirm_timeout: 60
"""

RETURN = r"""
changed:
  description: The document's C(changed); in check mode, whether changes are pending.
  returned: always
  type: bool
plan:
  description: The changes, each with C(action), C(kind), C(key), C(summary), C(origin),
    C(before), C(after) and, after an apply, C(result).
  returned: always
  type: list
  elements: dict
  sample:
    - action: create
      kind: rule
      summary: rule 1001 to 2001:db8:1::/64 lookup 6275
      origin: config ha.home_prefixes[0]
      result: ok
verification:
  description: What still differs after the apply when the kernel was read back (empty
    when it worked).
  returned: always
  type: list
  elements: dict
errors:
  description: The document's errors (conflicts with foreign objects, failed changes).
  returned: always
  type: list
  elements: dict
mode:
  description: C(daemon) (through the running daemon) or C(static).
  returned: always
  type: str
mip6ctl_rc:
  description: Exit code of mip6ctl (C(0), or in check mode C(2) when changes are pending).
  returned: when mip6ctl ran
  type: int
generation:
  description: Content hash of the configuration that was applied (planned).
  returned: when mip6ctl ran
  type: str
confirmation:
  description: With I(confirm_timeout), what the daemon armed (C(state) C(pending) with the
    generation C(number), C(rollback_to) and C(timeout), or C(not-needed) when nothing
    changed); None otherwise.
  returned: always
  type: dict
document:
  description: The whole C(mip6ctl apply --json) document (or, with I(config_result) in
    check mode, that task's plan document).
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mip6.mip6ctl.plugins.module_utils.mip6ctl import (
    COMMON_ARGS,
    plan_text,
    resolve_mip6ctl,
    run_mip6ctl,
)


def summarise(doc, changed):
    return {
        "changed": changed,
        "plan": doc.get("plan") or [],
        "verification": doc.get("verification") or [],
        "errors": doc.get("errors") or [],
        "mode": doc.get("mode"),
        "generation": doc.get("generation"),
        "confirmation": doc.get("confirmation"),
        "document": doc,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            **COMMON_ARGS,
            "dir": {"type": "path", "default": "/etc/mip6"},
            "confirm_timeout": {"type": "float"},
            "config_result": {"type": "dict"},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    p = module.params
    directory = os.path.abspath(p["dir"])
    check = module.check_mode
    if p["confirm_timeout"] is not None and not 0 < p["confirm_timeout"] <= 86400:
        module.fail_json(msg="confirm_timeout: want 0 < SECONDS <= 86400")

    pending = p["config_result"] or {}
    if check and pending.get("changed"):
        doc = pending.get("plan_document")
        if isinstance(doc, dict):
            result = summarise(doc, bool(doc.get("changed")))
            if module._diff and result["plan"]:
                title = "planned by mip6.mip6ctl.config for the files not installed yet"
                result["diff"] = {"prepared": plan_text(doc, title)}
            module.exit_json(**result)
        module.warn(
            "config_result: the config task reported changes but no plan (plan: false, or it "
            f"could not be computed); planning the files now in {directory} instead"
        )

    exe = resolve_mip6ctl(module)
    argv = [exe, "apply", "-c", directory, "--socket", p["socket"], "--json"]
    if check:
        argv.append("--check")
    elif p["confirm_timeout"] is not None:
        argv += ["--confirm-timeout", f"{p['confirm_timeout']:g}"]
    rc, doc, out, err = run_mip6ctl(module, argv)
    if doc is None:
        module.fail_json(
            msg=f"mip6ctl apply exited {rc} without a JSON document: {(err or out).strip()}",
            rc=rc,
            stdout=out,
            stderr=err,
            cmd=argv,
        )
    ok_codes = (0, 2) if check else (0,)
    result = summarise(doc, bool(doc.get("changed")))
    # not `rc`: Ansible takes a non-zero `rc` for a failure, and 2 (check mode) is none
    result["mip6ctl_rc"] = rc
    if module._diff and result["plan"]:
        title = "mip6ctl apply --check" if check else "mip6ctl apply"
        result["diff"] = {"prepared": plan_text(doc, title)}
    if rc not in ok_codes or not doc.get("ok", False):
        lines = []
        for e in result["errors"]:
            where = f"{e['file']}:{e['line']}: " if e.get("file") and e.get("line") else ""
            key = f"{e['key']}: " if e.get("key") else ""
            lines.append(f"{where}{key}{e.get('message')}")
        for m in result["verification"]:
            lines.append(
                f"verification: {m.get('key')}: desired {m.get('desired') or 'absent'}, "
                f"current {m.get('current') or 'absent'}"
            )
        module.fail_json(
            msg=f"mip6ctl {'apply --check' if check else 'apply'} failed (exit {rc}):\n"
            + "\n".join(lines or [(err or out).strip()]),
            stderr=err,
            cmd=argv,
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
