"""Which edits a reload cannot apply: named, so the daemon can say a restart is needed."""

from __future__ import annotations

from typing import Any

from mip6ctl.config.model import Mip6Config
from mip6ctl.config.restart import RESTART_ONLY, restart_only_changes


def cfg(**sections: Any) -> Mip6Config:
    doc: dict[str, Any] = {"node": {"role": "cn"}}
    doc.update(sections)
    return Mip6Config.model_validate(doc)


def test_live_settings_need_no_restart() -> None:
    old = cfg()
    new = cfg(cn={"max_binding_lifetime": 100}, log={"level": "debug"})
    assert restart_only_changes(old, new) == []


def test_start_only_settings_are_named() -> None:
    old = cfg()
    new = cfg(
        daemon={"control_socket": "/run/other.sock", "metrics": {"listen": "[::1]:9999"}},
        kernel={"signalling": "userspace", "route_table": 7000},
    )
    assert restart_only_changes(old, new) == [
        "daemon.control_socket",
        "daemon.metrics",
        "kernel.signalling",
        "kernel.route_table",
    ]


def test_every_listed_path_exists_in_the_model() -> None:
    doc = cfg().model_dump(mode="json")
    for path in RESTART_ONLY:
        node: Any = doc
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, path
            node = node[part]
