"""Logging for the daemon: readable lines on a terminal, JSON lines otherwise.

Journald and log shippers want one JSON object per line; a person at a
terminal wants text.  Key material never reaches a log record: the code
logs fingerprints only, and this module adds nothing of its own.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "auto", file: str | None = None) -> None:
    stream = open(file, "a", buffering=1) if file else sys.stderr  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    text = fmt == "text" or (fmt == "auto" and stream.isatty())
    if text:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger("mip6ctl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
