"""Every UMIP knob in docs/configuration.md maps to a real key, or says why not."""

from __future__ import annotations

import json
import re

from .conftest import ROOT

SHARED_KNOBS = ROOT.parent / "shared" / "UMIP-KNOBS.md"


def _rows() -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = text.split("## Coming from UMIP")[1]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def _resolve(schema: dict, path: str) -> bool:
    defs = schema.get("$defs", {})
    node: dict = schema
    for part in path.split("."):
        part = part.removesuffix("[]")
        node = _deref(node, defs)
        props = node.get("properties")
        if props is None and "additionalProperties" in node:
            node = node["additionalProperties"]
            continue
        if not props or part not in props:
            return False
        node = props[part]
    return True


def _deref(node: dict, defs: dict) -> dict:
    while True:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        elif "anyOf" in node:
            node = next((n for n in node["anyOf"] if n.get("type") != "null"), node["anyOf"][0])
        elif node.get("type") == "array" and "items" in node:
            node = node["items"]
        else:
            return node


def test_every_mapped_key_exists():
    schema = json.loads((ROOT / "schemas" / "mip6.schema.json").read_text())
    rows = _rows()
    assert len(rows) >= 45
    for umip, ours, note in rows:
        if ours == "—":
            assert note, f"{umip} has no key and no reason"
            continue
        for key in re.findall(r"`([a-z_.\[\]]+)`", ours):
            if key.startswith("ipsec.*"):
                key = "ipsec." + key.split(".", 2)[2] if key.count(".") > 1 else "ipsec"
                key = key.replace("ipsec.", "ipsec.x.", 1) if key != "ipsec" else key
            assert _resolve(schema, key), f"{umip}: {key} is not in the schema"


def test_every_knob_of_the_predecessor_is_listed():
    if not SHARED_KNOBS.exists():  # the shared notes live beside the checkout
        return
    listed = " ".join(r[0] for r in _rows())
    knobs = set(re.findall(r"`(\w+)", SHARED_KNOBS.read_text()))
    skip = {"include", "CN", "HA", "MN", "if", "HoA", "TYPE", "IPsecPolicy"}
    missing = sorted(k for k in knobs - skip if k[0].isupper() and k not in listed)
    assert missing == []
