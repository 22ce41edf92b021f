"""`python -m nanonas.study`: see nanonas.study.cli for the flags."""

import sys

from nanonas.study.cli import main

sys.exit(main())
