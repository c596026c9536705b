"""``python -m control_plane.api.openapi [--markdown]``."""

from control_plane.api.openapi.cli import main

raise SystemExit(main())
