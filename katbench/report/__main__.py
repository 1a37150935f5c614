"""Entry point of ``python -m katbench.report`` (see :mod:`katbench.report.cli`)."""

import sys

from katbench.report.cli import main

sys.exit(main())
