"""`python -m nanonas.export`: see nanonas.export.cli for the flags."""

import sys

from nanonas.export.cli import main

sys.exit(main())
