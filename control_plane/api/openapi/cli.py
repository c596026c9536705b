"""``python -m control_plane.api.openapi [--markdown]``: print the OpenAPI document, or
``docs/api.md`` rendered from it and the hand-written template."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from control_plane.api.routes import openapi_document

__all__ = ["DEFAULT_TEMPLATE", "main"]

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "docs" / "api.template.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m control_plane.api.openapi",
        description="Print the OpenAPI document, or docs/api.md generated from it.",
    )
    parser.add_argument("--markdown", action="store_true", help="print docs/api.md")
    parser.add_argument(
        "--template", type=Path, default=DEFAULT_TEMPLATE, help="hand-written sections"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        from control_plane.api.openapi.markdown import render_markdown

        template = args.template.read_text(encoding="utf-8")
        sys.stdout.write(render_markdown(openapi_document(), template))
    else:
        sys.stdout.write(json.dumps(openapi_document(), indent=2) + "\n")
    return 0
