#!/usr/bin/python3
"""mip6ctl, as installed by the Debian package.

The code and its Python dependencies live in /usr/lib/mip6ctl (Debian 12's
pydantic and pyroute2 are too old); that directory goes first on sys.path,
before /usr/lib/python3/dist-packages, so the packaged versions win.  Works
the same under ``python3 -I``.  The exit code is the CLI's.
"""

import sys

sys.path.insert(0, "/usr/lib/mip6ctl")

from mip6ctl.cli.main import main

sys.exit(main())
