"""YAML with line numbers: every error in a flow file points at ``file:line``.

PyYAML composes a node tree that knows where each key and value starts; we keep a map from
the path of keys (``("nodes", "draft", "params", "n")``) to its line, and render pydantic
validation errors and our own checks through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from forkpath._errors import ConfigError

Path_ = tuple[str | int, ...]


class LineMap:
    """Where each key path of a YAML document starts (1-based lines)."""

    def __init__(self, source: str, lines: dict[Path_, int] | None = None) -> None:
        self.source = source
        self.lines = lines or {}

    def where(self, path: Path_ = ()) -> str:
        """``file:line`` of the deepest known prefix of ``path``."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return f"{self.source}:{line}"
        return self.source

    def error(self, message: str, path: Path_ = ()) -> ConfigError:
        return ConfigError(message, where=self.where(path))


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            lines[(*path, name)] = key.start_mark.line + 1
            _walk(value, (*path, name), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines)


def load_yaml(text: str, source: str = "<flow>") -> tuple[Any, LineMap]:
    """Parse ``text``; syntax errors become :class:`ConfigError` with the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", where=f"{source}{line}") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, LineMap(source, lines)


def load_yaml_file(path: str | Path) -> tuple[Any, LineMap]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read flow file: {e.strerror}", where=str(path)) from None
    return load_yaml(text, str(path))


def render_validation_error(error: ValidationError, lines: LineMap) -> ConfigError:
    """The first problem of a pydantic error, as ``file:line: field: what is wrong``."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    field = ".".join(str(p) for p in loc) or "flow"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    elif first["type"] == "missing":
        message = "required field is missing"
    extra = len(error.errors()) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return lines.error(f"{field}: {message}{more}", loc)
