"""`mip6ctl schema`: the JSON Schema of the configuration, generated from the models.

`schemas/mip6.schema.json` in the repository is this output; `--check FILE`
exits 1 when FILE is stale, which the test suite uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mip6ctl.cli import exitcodes

SCHEMA_ID = "https://mip6ctl.invalid/schemas/mip6.schema.json"


def render() -> str:
    from mip6ctl.config.model import Mip6Config

    schema = Mip6Config.model_json_schema()
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    text = render()
    if args.check:
        try:
            current = Path(args.check).read_text()
        except OSError as e:
            sys.stderr.write(f"mip6ctl schema: cannot read {args.check}: {e.strerror}\n")
            return exitcodes.ERROR
        if current != text:
            sys.stderr.write(
                f"mip6ctl schema: {args.check} is stale; regenerate with "
                f"`mip6ctl schema -o {args.check}`\n"
            )
            return exitcodes.ERROR
        return exitcodes.OK
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return exitcodes.OK
