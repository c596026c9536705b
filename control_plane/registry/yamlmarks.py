"""YAML loading that remembers where every value stood (line, column), for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from control_plane.bounded_yaml import DEFAULT_LIMITS, YamlLimitError, compose_bounded
from control_plane.fast_yaml import fast_load
from control_plane.problems import Problem, json_pointer

__all__ = ["MarkedDocument", "load_marked"]

Path = tuple[str | int, ...]


@dataclass(slots=True)
class MarkedDocument:
    data: Any
    file: str
    # path -> (line, column), 1-based, of the value; keys of mappings under ``key_marks``.
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # The text of a document loaded without marks (``fast_yaml``): they are read from it
    # the first time a problem needs one.
    text: str | None = None

    def _read_marks(self) -> None:
        text, self.text = self.text, None
        if text is not None:
            node, _ = compose_bounded(text)
            if node is not None:
                _walk(node, (), self)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int] | None:
        """Mark of ``path`` or of its nearest ancestor present in the document."""
        self._read_marks()
        if key and path in self.key_marks:
            return self.key_marks[path]
        probe = path
        while True:
            if probe in self.marks:
                return self.marks[probe]
            if not probe:
                return None
            probe = probe[:-1]

    def problem(self, path: Path, message: str, fix: str = "", *, key: bool = False) -> Problem:
        mark = self.locate(path, key=key)
        return Problem(
            pointer=json_pointer(path),
            message=message,
            fix=fix,
            file=self.file,
            line=mark[0] if mark else None,
            column=mark[1] if mark else None,
        )


def _walk(node: yaml.Node, path: Path, doc: MarkedDocument) -> None:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                doc.key_marks[child] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                doc.problems.append(
                    doc.problem(child, f"duplicate key '{key}'", "keep one of them", key=True)
                )
            seen.add(key)
            doc.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, doc)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), doc)


def load_marked(text: str, file: str) -> MarkedDocument:
    """Parse YAML text (once, within ``bounded_yaml``'s limits); syntax errors and exceeded
    limits become problems instead of exceptions."""
    loaded = fast_load(text, DEFAULT_LIMITS)
    if loaded is not None:
        return MarkedDocument(data=loaded.data, file=file, text=text)
    doc = MarkedDocument(data=None, file=file)
    try:
        node, doc.data = compose_bounded(text)
    except YamlLimitError as exc:
        doc.problems.append(
            Problem(
                pointer="",
                message=f"YAML refused: {exc.message}",
                fix=exc.fix,
                file=file,
                line=exc.line,
                column=exc.column,
            )
        )
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        doc.problems.append(
            Problem(
                pointer="",
                message=f"YAML syntax error: {exc.problem}",
                fix="fix the YAML syntax at this position (indentation, quotes, ':' after keys)",
                file=file,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        )
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(pointer="", message=f"YAML error: {exc}", file=file))
        return doc
    if node is not None:
        _walk(node, (), doc)
    return doc
