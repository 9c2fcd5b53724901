"""What the mip6.mip6ctl modules share: finding and running mip6ctl, the plan as text.

AnsiballZ ships a collection's module_utils with each module that imports them,
so this is one copy on the controller and in every module's payload.
"""

import json
import os
import socket
import subprocess

#: the options of doc_fragments/mip6ctl.py, in every module's argument_spec
COMMON_ARGS = {
    "socket": {"type": "path", "default": "/run/mip6/control.sock"},
    "mip6ctl_path": {"type": "path", "default": "mip6ctl"},
}


def resolve_mip6ctl(module):
    """The mip6ctl executable: mip6ctl_path as a path, or a name looked up on PATH."""
    name = module.params["mip6ctl_path"]
    if os.sep in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            module.fail_json(msg=f"mip6ctl_path {name!r} is not an executable file")
        return name
    found = module.get_bin_path(name)
    if not found:
        module.fail_json(
            msg=f"{name!r} not found on PATH of the managed host; install mip6ctl "
            "or set mip6ctl_path"
        )
    return found


def run_mip6ctl(module, argv):
    """Run mip6ctl, bounded by the timeout option: (rc, parsed JSON or None, stdout, stderr)."""
    timeout = module.params["timeout"]
    try:
        p = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            env=dict(os.environ, NO_COLOR="1"),
        )
    except subprocess.TimeoutExpired:
        module.fail_json(msg=f"{' '.join(argv)}: no answer within {timeout} s", cmd=argv)
    except OSError as e:
        module.fail_json(msg=f"cannot run {argv[0]}: {e}", cmd=argv)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = None
    return p.returncode, doc, p.stdout, p.stderr


def daemon_answers(path, timeout=1.0):
    """True when something accepts connections on the control socket `path`."""
    if not path or not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


_SIGNS = {"create": "+", "update": "~", "delete": "-", "migrate": ">"}


def plan_text(doc, title):
    """A mip6ctl plan document as the lines `mip6ctl diff` prints."""
    lines = [f"kernel plan ({title}):"]
    if doc.get("note"):
        lines.append(f"  note: {doc['note']}")
    for c in doc.get("plan") or []:
        origin = f"  ({c['origin']})" if c.get("origin") else ""
        result = f"  {c['result']}" if c.get("result") else ""
        lines.append(f"  {_SIGNS.get(c.get('action'), '?')} {c.get('summary')}{origin}{result}")
    for e in doc.get("errors") or []:
        where = f"{e['file']}:{e.get('line') or '?'}: " if e.get("file") else ""
        key = f"{e['key']}: " if e.get("key") else ""
        lines.append(f"  ! {where}{key}{e.get('message')}")
    for m in doc.get("verification") or []:
        lines.append(
            f"  ! verification: desired {m.get('desired') or 'absent'}, "
            f"current {m.get('current') or 'absent'}"
        )
    n = doc.get("counts") or {}
    if doc.get("plan"):
        moved = f", {n['migrate']} to migrate" if n.get("migrate") else ""
        lines.append(
            f"  {n.get('create', 0)} to create, {n.get('update', 0)} to update{moved}, "
            f"{n.get('delete', 0)} to delete"
        )
    elif not doc.get("errors"):
        lines.append("  no changes: the kernel matches")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ this module
