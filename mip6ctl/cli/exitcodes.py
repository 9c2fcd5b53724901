"""Exit codes: Terraform's 0/1/2 contract plus sysexits for usage and gaps."""

OK = 0  # success; for diff/apply --check: no change pending
ERROR = 1  # failure, or invalid configuration
CHANGES = 2  # diff / apply --check: changes pending
USAGE = 64  # EX_USAGE: bad command line (argparse would say 2, which means "changes")
UNAVAILABLE = 69  # EX_UNAVAILABLE: the command exists but is not built yet / cannot run here
