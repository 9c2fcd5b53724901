"""ansible-core for the netns tests: its tools next to this Python, an isolated environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def next_to_python(name: str) -> str | None:
    """`name` from the venv of this interpreter, else from PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


def ansible_env(tmp: Path, collections: Path, **extra: str) -> dict[str, str]:
    """ansible's environment: only `collections`, config and temp dirs under `tmp`, no
    ANSIBLE_/MIP6_ variables of the caller (no host configuration, socket or state)."""
    (tmp / "ansible.cfg").write_text("")  # read instead of /etc/ansible or ~/.ansible.cfg
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MIP6_"))}
    env.update(
        LC_ALL="C.UTF-8",  # ansible-core refuses to start without a UTF-8 locale
        LANG="C.UTF-8",
        ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOWS="1",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_STDOUT_CALLBACK="default",
    )
    env.update(extra)
    return env
