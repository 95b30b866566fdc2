"""`python -m infra.ops …`: see infra/ops/cli.py."""

import sys

from infra.ops.cli import main

sys.exit(main())
