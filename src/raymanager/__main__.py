"""``python -m raymanager``: the same as the ``raymanager`` command."""

import sys

from raymanager.cli import main

sys.exit(main())
