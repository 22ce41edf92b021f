import sys

from nanonas.report.cli import main

sys.exit(main())
