"""``python -m control_plane.api.openapi [--markdown]``."""

from control_plane.api.openapi.document import main

raise SystemExit(main())
