"""The manual IPsec keys of a generation, read once per load: bytes in memory, never shown.

`mip6ctl.config.checks` has already refused a generation whose key files are
missing, of the wrong size or readable by others; what fails here anyway (a
file changed between the check and the read) leaves that template without
keys, and render then installs its policies without SAs: the kernel drops
what they cover instead of sending it unprotected.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mip6ctl.config.model import Mip6Config
from mip6ctl.config.secrets import KeyFileError, read_key

log = logging.getLogger("mip6ctl.config")


def read_template_keys(cfg: Mip6Config, base: Path) -> dict[str, dict[str, bytes]]:
    """Template name -> {"encryption"|"authentication": key bytes} for manual keying."""
    out: dict[str, dict[str, bytes]] = {}
    for name, tpl in cfg.ipsec.items():
        if tpl.key_management != "manual":
            continue
        keys: dict[str, bytes] = {}
        for section in ("encryption", "authentication"):
            alg = getattr(tpl, section)
            if alg is None or alg.key_file is None or alg.algorithm == "null":
                continue
            try:
                keys[section] = read_key(alg.key_file, alg.algorithm, base=base).reveal()
            except KeyFileError as e:
                log.error("ipsec.%s.%s: %s", name, section, e)
        out[name] = keys
    return out
