"""`python -m nanonas.report`: see nanonas.report.cli."""

import sys

from nanonas.report.cli import main

sys.exit(main())
