#!/usr/bin/python
# Copyright: mip6ctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/gpl-2.0.txt)
#
# Ansible wants DOCUMENTATION, EXAMPLES and RETURN above the imports.
# ruff: noqa: E402

DOCUMENTATION = r"""
---
module: config
short_description: Stage, validate and install the mip6ctl configuration directory
version_added: "0.1.0"
description:
  - Manages the C(*.toml) files of a mip6ctl configuration directory (C(/etc/mip6)),
    one file per mobile node, the node file, IPsec templates, ...
  - mip6ctl merges every C(*.toml) file of the directory into one generation, so a file
    cannot be judged alone. The module builds the whole resulting directory in a temporary
    directory next to I(dir) (other entries of I(dir), such as C(keys/), are symlinked in,
    so relative C(key_file) paths resolve as they will in place) and runs
    C(mip6ctl validate -c STAGED --json). When that fails, the module fails with every
    problem (file, line, key, message) and nothing is installed; the old files stay.
  - It then asks C(mip6ctl diff --json) what the new configuration would change in the
    kernel and returns that as RV(plan). A daemon answering on I(socket) plans only the
    directory it runs, so when files change the plan is the static one of the staged files
    (what they require of the kernel; bindings are not included), and when nothing changes
    it is the daemon's own plan of I(dir) (which includes its live bindings).
  - Changed files are installed atomically, one after another (a temporary file in I(dir),
    fsync, rename); removals come last. A running daemon that watches I(dir) reloads by
    itself; it applies a generation only when it is valid as a whole.
  - In check mode nothing is installed; the module reports whether files would change and
    returns the plan. With C(--diff) it shows a before/after diff per file and the kernel
    plan as a text section.
  - Keys are referenced by path in the TOML (C(key_file), C(psk_file)), never written
    into it; the file contents are therefore not secret and show in diffs and logs.
    A value that looks like inlined key material is refused before anything is shown.
  - Runs on the managed host and needs mip6ctl there; it never calls C(ip).
options:
  dir:
    description:
      - The configuration directory mip6ctl reads (C(mip6ctl -c)). Created (mode C(0755))
        when missing.
    type: path
    default: /etc/mip6
  files:
    description:
      - File name to TOML content. Names end in C(.toml), do not start with C(.) and
        contain no C(/) (the files mip6ctl loads). Contents are written byte for byte
        (UTF-8).
      - Do not put key material here; see the description.
    type: dict
    required: true
  exclusive:
    description:
      - Remove the C(*.toml) files of I(dir) that I(files) does not list (a mobile node
        dropped from the inventory, a hand-written file). Other entries (key files,
        C(keys/), hidden files) are never touched.
      - When false, unlisted C(*.toml) files stay and are part of the validated
        generation.
    type: bool
    default: false
  mode:
    description:
      - Mode of the listed files, as an octal string (C("0644")) or a number.
      - Default, C(0644) for new files; an existing file keeps its mode.
    type: raw
  owner:
    description:
      - Owner (name or uid) of the listed files. Default, new files belong to the
        user the module runs as, existing files keep theirs.
    type: str
  group:
    description:
      - Group (name or gid) of the listed files; same defaults as I(owner).
    type: str
  plan:
    description:
      - Compute the kernel plan (C(mip6ctl diff)). Reading kernel state needs root; a
        plan that cannot be computed is a warning, not a failure.
    type: bool
    default: true
  timeout:
    description:
      - Seconds each mip6ctl invocation may take.
    type: int
    default: 120
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction.
    support: full
  diff_mode:
    description: Returns details on what changed (or would change) in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
notes:
  - The staging directory is created next to I(dir) (in its parent directory, or in
    C($TMPDIR) when that does not exist) and removed before the module returns.
  - Between two renames a watching daemon may see a partial update; it keeps the last
    valid generation and reloads again once the directory stops changing. Use
    M(mip6.mip6ctl.apply) afterwards to converge and verify.
seealso:
  - module: mip6.mip6ctl.apply
  - module: mip6.mip6ctl.info
extends_documentation_fragment:
  - mip6.mip6ctl.mip6ctl
author:
  - mip6ctl developers
"""

EXAMPLES = r"""
- name: Install the home agent configuration, one file per mobile node
  mip6.mip6ctl.config:
    dir: /etc/mip6
    exclusive: true
    files:
      10-node.toml: |
        [node]
        role = "ha"
      20-ha.toml: |
        [ha]
        interfaces = ["eth0"]
        home_prefixes = ["2001:db8:1::/64"]
      50-mn-alice.toml: |
        [[ha.mobile_nodes]]
        home_address = "2001:db8:1::100"
  register: mip6_config

- name: Files rendered from templates on the controller
  mip6.mip6ctl.config:
    files:
      10-node.toml: "{{ lookup('ansible.builtin.template', 'node.toml.j2') }}"
      30-ipsec.toml: |
        [ipsec.mn1]
        protect = ["binding-update"]
        encryption = { algorithm = "aes-cbc", key_file = "keys/mn1.enc", key_bits = 128 }
        authentication = { algorithm = "hmac-sha256", key_file = "keys/mn1.auth" }
        spi = { to_ha = 0x1001, to_mn = 0x1002 }
    mode: "0644"
"""

RETURN = r"""
changed:
  description: True when a file was (check mode, would be) created, modified or removed.
  returned: always
  type: bool
files_changed:
  description: Names of the listed files whose content or attributes were (would be)
    written.
  returned: always
  type: list
  elements: str
  sample: ["20-ha.toml", "50-mn-bob.toml"]
files_removed:
  description: Names of the C(*.toml) files removed (would be removed) by I(exclusive).
  returned: always
  type: list
  elements: str
generation:
  description: Content hash of the resulting directory, as C(mip6ctl status) reports it
    once the daemon runs it (C(generation)).
  returned: always
  type: str
  sample: sha256:1f90b304475355a6923d140c3167adda46e9d167b6271c6a1e314f8ead9bc9ee
problems:
  description: When validation fails, every problem (C(file) relative to I(dir), C(line),
    C(key), C(message), C(kind)).
  returned: failure
  type: list
  elements: dict
validation:
  description: The C(mip6ctl validate --json) summary and warnings of the staged directory.
  returned: always
  type: dict
plan:
  description: The planned kernel changes (the C(plan) list of C(mip6ctl diff --json)),
    C(action), C(kind), C(key), C(summary), C(origin), C(before), C(after). None when
    I(plan) is false or the plan could not be computed.
  returned: always
  type: list
  elements: dict
  sample:
    - action: create
      kind: rule
      summary: rule 1001 to 2001:db8:2::/64 lookup 6275
      origin: config ha.home_prefixes[1]
plan_document:
  description: The whole C(mip6ctl diff --json) document (C(mode) C(static) or C(daemon),
    C(note), C(changed), C(counts), C(impact), C(errors), ...). Pass the registered result
    to M(mip6.mip6ctl.apply) as C(config_result) so that its check mode reports this plan.
  returned: when I(plan) is true and the plan could be computed
  type: dict
diff:
  description: Per changed file C(before_header), C(after_header), C(before), C(after);
    then the kernel plan as a text section (C(prepared)).
  returned: in diff mode
  type: list
  elements: dict
"""

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mip6.mip6ctl.plugins.module_utils.mip6ctl import (
    COMMON_ARGS,
    daemon_answers,
    plan_text,
    resolve_mip6ctl,
    run_mip6ctl,
)


#: a file the loader reads: *.toml, not hidden (mip6ctl.config.loader.config_files)
def is_config_name(name):
    return name.endswith(".toml") and not name.startswith(".")


_NAME_OK = re.compile(r"^[^./\x00][^/\x00]*\.toml$")
#: `name = "string"` or `name = 'string'` anywhere on a line (also inside inline tables)
_STRING_VALUE = re.compile(r"""([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')""")
_HEX_KEY = re.compile(r"^(?:0[xX])?[0-9A-Fa-f]{32,}$")
_SECRET_NAME = re.compile(r"(?:^|[_-])(?:key|psk|secret|password|passphrase)$", re.IGNORECASE)


def key_material(content):
    """Lines of `content` that look like inlined key material: (line, key name)."""
    found = []
    for lineno, line in enumerate(content.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in _STRING_VALUE.finditer(line):
            key, value = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
            compact = re.sub(r"\s+", "", value)
            if _SECRET_NAME.search(key) or _HEX_KEY.match(compact):
                found.append((lineno, key))
    return found


def parse_mode(module, value):
    if value is None:
        return None
    if isinstance(value, bool):
        module.fail_json(msg=f"mode: want an octal string such as '0644', got {value!r}")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            module.fail_json(msg=f"mode: want an octal string such as '0644', got {value!r}")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg=f"mode: out of range: {value!r}")
    return mode


def parse_id(module, value, kind):
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid if kind == "owner" else grp.getgrnam(text).gr_gid
    except KeyError:
        module.fail_json(msg=f"{kind}: no such {'user' if kind == 'owner' else 'group'}: {text}")


def current_files(directory):
    """{name: (bytes, stat)} of the configuration files in `directory` (as the loader sees)."""
    out = {}
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if is_config_name(name) and os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = (f.read(), os.stat(path))
    return out


def stage(directory, wanted):
    """A temporary directory next to `directory` holding `wanted` ({name: bytes}) plus
    symlinks to every other entry of `directory` (key files, keys/)."""
    parent = os.path.dirname(os.path.abspath(directory))
    base = parent if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK) else None
    prefix = "." + (os.path.basename(os.path.abspath(directory)) or "mip6") + ".staging-"
    staged = tempfile.mkdtemp(prefix=prefix, dir=base)
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if is_config_name(name):
                continue  # configuration files come from `wanted` only
            os.symlink(os.path.join(os.path.abspath(directory), name), os.path.join(staged, name))
    for name, data in wanted.items():
        with open(os.path.join(staged, name), "wb") as f:
            f.write(data)
    return staged


def problem_lines(problems, staged):
    """validate's problems with file names relative to the configuration directory."""
    out, lines = [], []
    for p in problems:
        p = dict(p)
        f = p.get("file") or ""
        for prefix in (staged + os.sep, os.path.realpath(staged) + os.sep):
            if f.startswith(prefix):
                f = f[len(prefix) :]
        p["file"] = f or None
        out.append(p)
        where = ""
        if f:
            where = f"{f}:{p['line']}: " if p.get("line") else f"{f}: "
        key = f"{p['key']}: " if p.get("key") else ""
        lines.append(f"{where}{key}{p.get('message')}")
    return out, lines


def kernel_plan(module, exe, directory, staged, same_files):
    """(plan document or None, title for the text section, warning or None)."""
    sock = module.params["socket"]
    if daemon_answers(sock):
        if same_files:
            rc, doc, out, err = run_mip6ctl(
                module, [exe, "diff", "-c", directory, "--socket", sock, "--json"]
            )
            if doc is not None and doc.get("ok") and doc.get("mode") == "daemon":
                return doc, "mip6ctl diff, through the daemon", None
            why = "; ".join(e.get("message", "") for e in (doc or {}).get("errors", []))
            note = (
                f"the daemon on {sock} did not plan {directory} ({why or err.strip()}): "
                "static plan of the files instead (bindings not included)"
            )
        else:
            # the daemon plans a staged copy with its live bindings (never applies it)
            rc, doc, out, err = run_mip6ctl(
                module, [exe, "diff", "-c", staged, "--socket", sock, "--json"]
            )
            if doc is not None and doc.get("ok") and doc.get("mode") == "daemon":
                return doc, "mip6ctl diff of the staged files, through the daemon", None
            why = "; ".join(e.get("message", "") for e in (doc or {}).get("errors", []))
            note = (
                f"the daemon on {sock} did not plan the staged files ({why or err.strip()}): "
                "static plan of the new files instead (binding objects not included). Once "
                "installed, the daemon reloads them by itself"
            )
    else:
        note = None
    # A socket path that cannot answer: the static plan of the staged directory, even if
    # a daemon starts meanwhile.
    dead = os.path.join(staged, ".no-daemon.sock")
    rc, doc, out, err = run_mip6ctl(module, [exe, "diff", "-c", staged, "--socket", dead, "--json"])
    if doc is None:
        return None, None, f"kernel plan: mip6ctl diff exited {rc}: {(err or out).strip()}"
    if note:
        doc["note"] = note
    warning = None
    if rc == 1 or not doc.get("ok", True):
        msgs = "; ".join(e.get("message", "") for e in doc.get("errors", []))
        warning = f"kernel plan: {msgs or 'mip6ctl diff failed'}"
    return doc, "mip6ctl diff, static", warning


def write_atomically(directory, name, data, mode, uid, gid):
    """Temporary file in `directory`, attributes, fsync, rename over `name`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            st = os.fstat(f.fileno())
            if (uid is not None and uid != st.st_uid) or (gid is not None and gid != st.st_gid):
                os.fchown(f.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main():
    module = AnsibleModule(
        argument_spec={
            **COMMON_ARGS,
            "dir": {"type": "path", "default": "/etc/mip6"},
            "files": {"type": "dict", "required": True},
            "exclusive": {"type": "bool", "default": False},
            "mode": {"type": "raw"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "plan": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    p = module.params
    directory = os.path.abspath(p["dir"])
    mode = parse_mode(module, p["mode"])
    uid = parse_id(module, p["owner"], "owner")
    gid = parse_id(module, p["group"], "group")

    files = {}
    for name, content in (p["files"] or {}).items():
        if not isinstance(name, str) or not _NAME_OK.match(name):
            module.fail_json(
                msg=f"files: {name!r} is not a configuration file name (NAME.toml: no '/', "
                "not starting with '.')"
            )
        if not isinstance(content, str):
            module.fail_json(msg=f"files: {name}: want the TOML text, got {type(content).__name__}")
        found = key_material(content)
        if found:
            where = ", ".join(f"{name}:{line}: {key}" for line, key in found)
            module.fail_json(
                msg=f"{where}: looks like key material written into the configuration; "
                "mip6ctl reads keys only from files (key_file, psk_file, mode 0600) "
                "referenced by path. Refused before anything was staged or shown."
            )
        files[name] = content.encode("utf-8")

    before = current_files(directory)
    removed = sorted(n for n in before if n not in files) if p["exclusive"] else []
    wanted = dict(files)
    for name, (data, _st) in before.items():
        if name not in files and name not in removed:
            wanted[name] = data

    # What changes, file by file.
    changed_files, attrs = [], {}
    for name, data in sorted(files.items()):
        old = before.get(name)
        if old is None:
            want_mode = 0o644 if mode is None else mode
            attrs[name] = (want_mode, uid, gid)
            changed_files.append(name)
            continue
        old_data, st = old
        want_mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        want_uid = st.st_uid if uid is None else uid
        want_gid = st.st_gid if gid is None else gid
        attrs[name] = (want_mode, want_uid, want_gid)
        if (
            old_data != data
            or stat.S_IMODE(st.st_mode) != want_mode
            or (st.st_uid, st.st_gid) != (want_uid, want_gid)
        ):
            changed_files.append(name)
    create_dir = not os.path.isdir(directory)
    changed = bool(changed_files or removed or create_dir)

    result = {
        "changed": changed,
        "dir": directory,
        "files_changed": changed_files,
        "files_removed": removed,
        "plan": None,
    }
    exe = resolve_mip6ctl(module)
    staged = None
    try:
        staged = stage(directory, wanted)
        rc, doc, out, err = run_mip6ctl(module, [exe, "validate", "-c", staged, "--json"])
        if doc is None:
            module.fail_json(
                msg=f"mip6ctl validate exited {rc} without a JSON document: {(err or out).strip()}",
                rc=rc,
                stdout=out,
                stderr=err,
                **result,
            )
        problems, lines = problem_lines(doc.get("errors") or [], staged)
        warnings, wlines = problem_lines(doc.get("warnings") or [], staged)
        result["validation"] = {
            "valid": bool(doc.get("valid")) and rc == 0,
            "summary": doc.get("summary"),
            "warnings": warnings,
        }
        if rc != 0 or not doc.get("valid"):
            result["changed"] = False
            module.fail_json(
                msg=f"the configuration for {directory} is invalid; nothing installed:\n"
                + "\n".join(lines or [f"mip6ctl validate exited {rc}: {err.strip()}"]),
                problems=problems,
                **result,
            )
        for line in wlines:
            module.warn(f"mip6ctl validate: {line}")
        result["generation"] = doc.get("generation")

        title = None
        if p["plan"]:
            plan_doc, title, warning = kernel_plan(
                module, exe, directory, staged, same_files=not changed
            )
            if warning:
                module.warn(warning)
            if plan_doc is not None:
                result["plan_document"] = plan_doc
                result["plan"] = plan_doc.get("plan") or []

        if module._diff:
            diff = []
            for name in changed_files:
                old = before.get(name)
                head = os.path.join(directory, name)
                new_mode, new_uid, new_gid = attrs[name]
                if old is not None and old[0] == files[name]:
                    # the same bytes: only mode or ownership change
                    st = old[1]
                    diff.append(
                        {
                            "before_header": f"{head} (attributes)",
                            "after_header": f"{head} (attributes)",
                            "before": f"mode {stat.S_IMODE(st.st_mode):04o}\n"
                            f"owner {st.st_uid}\ngroup {st.st_gid}\n",
                            "after": f"mode {new_mode:04o}\n"
                            f"owner {st.st_uid if new_uid is None else new_uid}\n"
                            f"group {st.st_gid if new_gid is None else new_gid}\n",
                        }
                    )
                    continue
                old_head = f"{head} (absent)"
                if old is not None:
                    old_head = f"{head} (mode {stat.S_IMODE(old[1].st_mode):04o})"
                diff.append(
                    {
                        "before_header": old_head,
                        "after_header": f"{head} (mode {new_mode:04o})",
                        "before": old[0].decode("utf-8", "replace") if old else "",
                        "after": files[name].decode("utf-8", "replace"),
                    }
                )
            for name in removed:
                head = os.path.join(directory, name)
                diff.append(
                    {
                        "before_header": head,
                        "after_header": f"{head} (removed)",
                        "before": before[name][0].decode("utf-8", "replace"),
                        "after": "",
                    }
                )
            if "plan_document" in result:
                diff.append({"prepared": plan_text(result["plan_document"], title)})
            result["diff"] = diff
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)

    if module.check_mode or not changed:
        module.exit_json(**result)

    installed = []
    try:
        if create_dir:
            os.makedirs(directory, 0o755)
            os.chmod(directory, 0o755)
        for name in changed_files:
            m, u, g = attrs[name]
            write_atomically(directory, name, files[name], m, u, g)
            installed.append(name)
        fsync_dir(directory)
        for name in removed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
        fsync_dir(directory)
    except OSError as e:
        module.fail_json(
            msg=f"installing into {directory} stopped: {e}; installed so far: "
            f"{', '.join(installed) or 'nothing'} (each file atomically)",
            files_installed=installed,
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
