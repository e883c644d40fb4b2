"""Where things are in a flow file, and how a problem there is said: one line, ``file:line:
field: what is wrong``.

:class:`LineMap` maps each key path (``("nodes", "draft", "params", "n")``) to its line;
:func:`render_validation_error` turns a pydantic error into a :class:`ConfigError` at the line
of the first problem in the file, in a flow author's words (mappings, not dictionaries; a
misspelt field gets a "did you mean").
"""

from __future__ import annotations

import difflib
import re
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from forkpath._errors import ConfigError

Path_ = tuple[str | int, ...]

MAX_MESSAGE = 1000
"""Longest error message (user text quoted in it is cut in the middle)."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class LineMap:
    """Where each key path of a YAML document starts (1-based lines)."""

    def __init__(self, source: str, lines: dict[Path_, int] | None = None) -> None:
        self.source = source
        self.lines = lines or {}

    def line(self, path: Path_ = ()) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def where(self, path: Path_ = ()) -> str:
        """``file:line`` of the deepest known prefix of ``path``."""
        line = self.line(path)
        return self.source if line is None else f"{self.source}:{line}"

    def error(self, message: str, path: Path_ = ()) -> ConfigError:
        # pydantic prefixes a validator's own message; nested registry messages carry it too
        return ConfigError(one_line(message.replace("Value error, ", "")), where=self.where(path))


def label(path: Path_) -> str:
    """A key path as a flow author writes it: ``edges[1].to``, ``nodes.draft.params.n``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (user text can hold anything)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2  # keep both ends: a nested sub-flow's own error is at the end
    return text[:half] + " ... " + text[-half:]


def render_validation_error(
    error: ValidationError, lines: LineMap, model: type[BaseModel] | None = None
) -> ConfigError:
    """The problem of a pydantic error that comes first in the file, as ``file:line: field: what is
    wrong``. ``model`` (the validated class) lets an unknown field suggest the right spelling."""
    problems = error.errors()
    first = first_problem(problems, lines)
    loc = _path(first["loc"])
    field = label(loc) or "flow"
    message = plain(first["msg"])
    kind = first["type"]
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1]) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        if close:
            message = f"unknown field; did you mean {close[0]}?"
        elif known:
            message = f"unknown field (fields here: {', '.join(known)})"
        else:
            message = "unknown field (check its spelling)"
    elif kind == "missing":
        message = "required field is missing"
    elif first.get("input", ...) is None and kind.endswith("_type"):
        message = f"is empty (null); {message[0].lower() + message[1:]}"
    extra = len(problems) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return lines.error(f"{field}: {message}{more}", loc)


def plain(message: str) -> str:
    """A pydantic message in a flow author's words (YAML has mappings, not Python dictionaries)."""
    message = message.removeprefix("Value error, ")
    message = re.sub(r"a valid dictionary or instance of \w+", "a mapping", message)
    return message.replace("a valid dictionary", "a mapping")


def first_problem(problems: list[Any], lines: LineMap, where: Path_ = ()) -> Any:
    """The pydantic problem to report: the first in the file; on one line, a misspelt field
    before the field it misses; and never a container's problem when one inside it is named."""
    locs = [_path(p["loc"]) for p in problems]
    specific = [
        p
        for p, loc in zip(problems, locs, strict=True)
        if not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
    ]
    return min(
        specific or problems,
        key=lambda p: (lines.line((*where, *_path(p["loc"]))) or 0, p["type"] != "extra_forbidden"),
    )


def _path(loc: tuple[Any, ...]) -> Path_:
    # pydantic marks a dict key's own error with "[key]" after the key; the key is the place.
    return tuple(p for p in loc if p != "[key]")


def _fields_at(model: type[BaseModel], path: Path_) -> list[str]:
    """Field names (as YAML spells them) of the pydantic model at ``path`` inside ``model``."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = next(
                (f for name, f in current.model_fields.items() if part in (name, f.alias)),
                None,
            )
            if info is None:
                return []
            current = info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """The pydantic model, dict or list inside an optional or union annotation."""
    if get_origin(annotation) in (Union, UnionType):
        for arg in get_args(annotation):
            if get_origin(arg) in (dict, list) or (isinstance(arg, type) and issubclass(arg, BaseModel)):
                return arg
    return annotation
