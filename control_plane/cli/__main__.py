"""``python -m control_plane.cli``: the same entry point as ``integration-service``."""

import sys

from control_plane.cli import main

sys.exit(main())
