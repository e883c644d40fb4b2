"""YAML with line numbers, and with bounds: every error in a flow file points at ``file:line``.

Loading reads at most :data:`MAX_BYTES`, decodes UTF-8 (a BOM is fine; NUL bytes and other
control characters are not), and walks the parser's events once, without recursion, before
anything is built: one document, at most :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_NODES` nodes once aliases are expanded (a "billion laughs" file is refused at the
alias that crosses the bound). The composed node tree then gives the keys: strings only, each
at most once per mapping (a duplicate names both lines). Time and memory stay proportional to
the file's size.

It returns the data and a :class:`~forkpath.flows._lines.LineMap` of where each key is.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

import yaml

from forkpath._errors import ConfigError
from forkpath.flows._lines import LineMap, Path_, one_line

MAX_BYTES = 1 << 20
"""The largest flow file read (1 MiB); flows are a few kilobytes."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and lists (aliases expanded); flows need about eight."""
MAX_NODES = 100_000
"""The most YAML nodes (keys, values, items) once aliases are expanded."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_TAG_NAMES = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


# -- reading --------------------------------------------------------------------------------------
def read_flow_bytes(path: str | Path, source: str | None = None) -> bytes:
    """The bytes of a flow file: a regular file of at most :data:`MAX_BYTES`."""
    shown = one_line(source or str(path), 300)
    try:
        path = Path(path)
        if path.is_dir():
            raise ConfigError("is a directory, not a flow file", where=shown)
        if path.exists() and not path.is_file():
            raise ConfigError("is not a regular file (a flow file is a YAML file)", where=shown)
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError("cannot read flow file: no such file", where=shown) from None
    except OSError as e:
        raise ConfigError(f"cannot read flow file: {e.strerror or e}", where=shown) from None
    except ValueError as e:  # a NUL in the path
        raise ConfigError(f"cannot read flow file: {e}", where=shown) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"flow file is too large (more than {MAX_BYTES // 2**20} MiB); a flow is a few KiB", where=shown
        )
    return data


def decode_flow(data: bytes, source: str) -> str:
    """UTF-8 text of a flow file (a UTF-8 BOM is dropped); other encodings are refused by line."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32")):
        if data.startswith(bom):
            raise ConfigError(f"the file is {name}; save it as UTF-8", where=f"{source}:1")
    for bom, name in ((codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise ConfigError(f"the file is {name}; save it as UTF-8", where=f"{source}:1")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ConfigError(
            "NUL byte: a flow file is UTF-8 text (is this a binary or UTF-16 file?)", where=f"{source}:{line}"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"not UTF-8: byte 0x{data[e.start]:02x} cannot be decoded; save the file as UTF-8",
            where=f"{source}:{line}",
        ) from None


# -- parsing --------------------------------------------------------------------------------------
def _check_characters(text: str, source: str) -> None:
    if len(text) > MAX_BYTES:
        raise ConfigError(
            f"flow is too large (more than {MAX_BYTES // 2**20} MiB); a flow is a few KiB", where=source
        )
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        char = bad.group(0)
        what = "NUL character" if char == "\0" else f"character U+{ord(char):04X}"
        raise ConfigError(
            f"{what} is not allowed in a flow file (control characters and lone surrogates cannot be YAML)",
            where=f"{source}:{_line_at(text, bad.start())}",
        )


def _scan(text: str, source: str) -> None:
    """One pass over the parser's events: a single document, bounded depth and expanded size."""
    depth = 0  # containers open
    total = 0  # nodes so far, aliases expanded
    documents = 0
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, levels) of its node, expanded
    defined: dict[str, int] = {}  # anchor -> line
    stack: list[list[Any]] = []  # open containers: [anchor, total at start, depth, deepest inside]
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark else 1
        where = f"{source}:{line}"
        anchor = getattr(event, "anchor", None)
        if anchor is not None and not isinstance(event, yaml.AliasEvent):
            if anchor in defined:
                raise ConfigError(
                    f"anchor &{one_line(anchor, 60)} is defined twice (first at line {defined[anchor]})",
                    where=where,
                )
            defined[anchor] = line
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise ConfigError(
                    "a second YAML document ('---'): a flow file holds exactly one document", where=where
                )
        elif isinstance(event, yaml.AliasEvent):
            size, levels = anchors.get(event.anchor or "", (-1, 0))
            if size < 0:
                raise ConfigError(
                    f"alias *{one_line(event.anchor or '', 60)} refers to no anchor defined before it (or to one that contains it)",
                    where=where,
                )
            total += size
            if depth + levels > MAX_DEPTH:
                raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels (through an alias)", where=where)
            if stack:
                stack[-1][3] = max(stack[-1][3], depth + levels)
            if total > MAX_NODES:
                raise ConfigError(
                    f"YAML aliases expand this flow beyond {MAX_NODES} nodes (an alias bomb?); "
                    "write the repeated part out or keep aliases small",
                    where=where,
                )
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            total += 1
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"nesting deeper than {MAX_DEPTH} levels; a flow needs about eight", where=where
                )
            stack.append([event.anchor, total, depth, depth])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start, opened, deepest = stack.pop()
            if anchor is not None:
                anchors[anchor] = (total - start + 1, deepest - opened + 1)
            if stack:
                stack[-1][3] = max(stack[-1][3], deepest)
            depth -= 1
        if total > MAX_NODES:
            raise ConfigError(
                f"the flow has more than {MAX_NODES} YAML nodes; a flow has hundreds", where=where
            )


def _check_nodes(
    node: yaml.Node, loader: Any, source: str, lines: dict[Path_, int], path: Path_ = ()
) -> None:
    """Record each key path's line; refuse non-string and duplicate keys, and values that cannot
    be read as what they say they are (recursion is bounded by :func:`_scan`'s depth check)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode) and node.tag not in (_STR, _NULL):
        try:  # a 5000-digit integer, 2024-13-45, !!bool maybe: PyYAML fails with a bare exception
            loader.construct_object(node)
        except yaml.YAMLError:
            raise
        except Exception as e:
            what = _TAG_NAMES.get(node.tag, node.tag)
            reason = str(e).split(";")[0]
            raise ConfigError(
                f"cannot read {one_line(node.value, 40)!r} as {what}: {one_line(reason, 120)}",
                where=f"{source}:{node.start_mark.line + 1}",
            ) from None
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag == _MERGE:
                _check_nodes(value, loader, source, lines, path)
                continue
            if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                raise ConfigError(_key_problem(key), where=f"{source}:{line}")
            name = key.value
            if name in seen:
                raise ConfigError(
                    f"duplicate key {one_line(repr(name), 80)} (first at line {seen[name]}): "
                    "YAML would silently keep only the last one",
                    where=f"{source}:{line}",
                )
            seen[name] = line
            lines[(*path, name)] = line
            _check_nodes(value, loader, source, lines, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _check_nodes(item, loader, source, lines, (*path, i))


def _key_problem(key: yaml.Node) -> str:
    if not isinstance(key, yaml.ScalarNode):
        return "a key must be a plain string, not a list or mapping"
    what = _TAG_NAMES.get(key.tag, f"a {key.tag.rsplit(':', 1)[-1]}")
    shown = one_line(key.value, 60) or "(empty)"
    hint = " (YAML reads yes/no/on/off/true/false as booleans)" if key.tag.endswith(":bool") else ""
    return f"key {shown} is read as {what}{hint}; keys are strings: quote it, e.g. '{shown}'"


def _yaml_problem(e: yaml.YAMLError, text: str, source: str) -> ConfigError:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = e.problem or e.context or "cannot parse"
        line_text = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        if "tab" in problem or (problem.startswith("found character") and "\t" in line_text):
            problem = "a tab character where YAML expects spaces: indent with spaces only"
        elif "maximum nesting depth" in problem:  # libyaml's own bound, met before ours
            problem = f"nesting deeper than {MAX_DEPTH} levels; a flow needs about eight"
        return ConfigError(f"invalid YAML: {one_line(problem)}", where=where)
    position = getattr(e, "position", None)
    where = f"{source}:{_line_at(text, position)}" if isinstance(position, int) else source
    return ConfigError(
        f"invalid YAML: {one_line(str(e).splitlines()[0] if str(e) else type(e).__name__)}", where=where
    )


def load_yaml(text: str | bytes, source: str = "<flow>") -> tuple[Any, LineMap]:
    """Parse ``text`` within the bounds above; every problem is a :class:`ConfigError` with its line.

    Returns the data and the line of every key path. An empty document gives ``None``.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise ConfigError(
                f"flow is too large (more than {MAX_BYTES // 2**20} MiB); a flow is a few KiB", where=source
            )
        text = decode_flow(text, source)
    if not isinstance(text, str):
        raise ConfigError(f"a flow is YAML text, not {type(text).__name__}", where=source)
    _check_characters(text, source)
    try:
        _scan(text, source)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            lines: dict[Path_, int] = {}
            if node is not None:
                _check_nodes(node, loader, source, lines)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _yaml_problem(e, text, source) from None
    except RecursionError:  # the bounds above make this unreachable; kept as a last guard
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels", where=source) from None
    except (ValueError, TypeError, AttributeError, KeyError) as e:  # a constructor's bare exception
        raise ConfigError(f"invalid YAML: {one_line(str(e).split(';')[0], 200)}", where=source) from None
    return data, LineMap(source, lines)


def load_yaml_file(path: str | Path, source: str | None = None) -> tuple[Any, LineMap]:
    """:func:`load_yaml` of a file, read within :data:`MAX_BYTES` and decoded as UTF-8; errors
    name it as ``source`` (default: the path as given)."""
    source = source or str(path)
    data = read_flow_bytes(path, source)
    return load_yaml(decode_flow(data, source), source)
