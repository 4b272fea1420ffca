"""``python -m avlearn`` (and ``torchrun -m avlearn``) runs the CLI."""

import sys

from avlearn.cli.main import main

sys.exit(main())
