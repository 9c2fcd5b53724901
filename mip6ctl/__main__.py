from mip6ctl.cli.main import main

raise SystemExit(main())
