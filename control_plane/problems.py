"""Validation problems that name the place (file, line, column, JSON pointer) and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "RegistryError", "json_pointer"]


def json_pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indexes."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


@dataclass(frozen=True, slots=True)
class Problem:
    pointer: str
    message: str
    fix: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    # The policy rule that refused it (credential grants, SSRF), when one did.
    rule: str | None = None

    def render(self) -> str:
        where = self.file or "<document>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.pointer or '/'}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pointer": self.pointer, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        if self.file is not None:
            out["file"] = self.file
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        if self.rule is not None:
            out["rule"] = self.rule
        return out


class RegistryError(Exception):
    """Raised with every problem found; nothing was changed."""

    def __init__(self, problems: Sequence[Problem], summary: str = "invalid registry") -> None:
        self.problems = list(problems)
        self.summary = summary
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.summary}: {len(self.problems)} problem(s)"]
        lines.extend(f"  - {p.render()}" for p in self.problems)
        return "\n".join(lines)
