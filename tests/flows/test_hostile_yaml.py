"""Loading a flow file: every undecodable, hostile or misshapen input is one ConfigError with the
file and line, in bounded time and memory; never a traceback, a RecursionError or a hang."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from forkpath import ConfigError
from forkpath.flows import Flow
from forkpath.flows._yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml

GOOD = """\
name: ok
models:
  default: fake/m
verifier: math_answer
nodes:
  draft:
    strategy: best_of_n
    params: {n: 2}
  check:
    verifier: math_answer
edges:
  - {from: draft, to: check}
  - {from: check, to: end}
"""


def laughs(levels: int = 9, width: int = 10) -> str:
    """The billion laughs: each level lists the previous one ``width`` times (10^9 leaves)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# (label, flow text, expected line or None, expected fragment of the message)
TEXT_CASES = [
    ("empty file", "", None, "the flow file is empty"),
    ("comments only", "# a flow\n# to come\n", None, "the flow file is empty"),
    ("an empty document", "---\n", None, "the flow file is empty"),
    ("a top-level list", "- name: x\n- models: {}\n", None, "a flow file is a mapping"),
    ("a top-level scalar", "just some words\n", None, "not a single value (str)"),
    ("a top-level number", "42\n", None, "not a single value (int)"),
    ("two documents", GOOD + "---\nname: other\n", 14, "a second YAML document"),
    ("tab indentation", GOOD.replace("    params: {n: 2}", "\tparams: {n: 2}"), 8, "a tab character"),
    ("tab after a key", "name: ok\nmodels:\n\tdefault: fake/m\n", 3, "indent with spaces only"),
    ("duplicate top-level key", GOOD + "name: again\n", 14, "duplicate key 'name' (first at line 1)"),
    (
        "duplicate nested key",
        GOOD.replace("    params: {n: 2}", "    params: {n: 2}\n    params: {n: 3}"),
        9,
        "duplicate key 'params' (first at line 8)",
    ),
    (
        "duplicate key in flow style",
        GOOD.replace("{n: 2}", "{n: 2, n: 4}"),
        8,
        "duplicate key 'n' (first at line 8)",
    ),
    (
        "duplicate key inside a list item",
        GOOD.replace("{from: check, to: end}", "{from: check, to: end, to: draft}"),
        13,
        "duplicate key 'to'",
    ),
    (
        "duplicate node",
        GOOD.replace("  check:\n", "  draft:\n"),
        9,
        "duplicate key 'draft' (first at line 6)",
    ),
    ("quoted and plain duplicate", GOOD + '"name": x\n', 14, "duplicate key 'name'"),
    ("integer key", GOOD.replace("{n: 2}", "{1: 2}"), 8, "key 1 is read as an integer"),
    ("boolean key (on)", GOOD.replace("  check:\n", "  on:\n"), 9, "key on is read as a boolean"),
    ("boolean key (yes)", GOOD + "yes: 1\n", 14, "YAML reads yes/no/on/off/true/false as booleans"),
    ("null key", GOOD + "~: 1\n", 14, "key ~ is read as null"),
    ("float key", GOOD.replace("{n: 2}", "{1.5: 2}"), 8, "key 1.5 is read as a number"),
    ("list as a key", GOOD + "? [a, b]\n: 1\n", 14, "a key must be a plain string"),
    ("mapping as a key", GOOD.replace("{n: 2}", "{{a: 1}: 2}"), 8, "a key must be a plain string"),
    ("billion laughs", laughs(), 5, "YAML aliases expand this flow beyond"),
    (
        "billion laughs under nodes",
        "name: x\nnodes:\n" + "".join("  " + line + "\n" for line in laughs().splitlines()),
        7,
        "an alias bomb",
    ),
    ("alias to itself", "name: x\nmodels: &m [*m]\n", 2, "alias *m refers to no anchor defined before it"),
    ("alias to nothing", GOOD.replace("{n: 2}", "*nothing"), 8, "alias *nothing refers to no anchor"),
    ("anchor defined twice", "a: &x 1\nb: &x 2\nc: *x\n", 2, "anchor &x is defined twice (first at line 1)"),
    (
        "deep flow-style nesting",
        "name: x\nmodels: " + "[" * 5000 + "]" * 5000 + "\n",
        2,
        "nesting deeper than",
    ),
    (
        "deep block nesting",
        "name: x\n" + "".join("  " * i + f"k{i}:\n" for i in range(100)),
        MAX_DEPTH + 2,
        f"nesting deeper than {MAX_DEPTH} levels",
    ),
    (
        "deep nesting through aliases",
        "deep: &d " + "[" * 20 + "]" * 20 + "\nnodes: " + "[" * 20 + "*d" + "]" * 20 + "\n",
        2,
        "nesting deeper than 32 levels (through an alias)",
    ),
    (
        "too many nodes",
        "name: x\nitems: [" + ", ".join(["1"] * (MAX_NODES + 1)) + "]\n",
        2,
        "more than 100000 YAML nodes",
    ),
    ("NUL character", GOOD.replace("  check:", "  ch\0eck:"), 9, "NUL character is not allowed"),
    ("control character", GOOD.replace("name: ok", "name: o\x07k"), 1, "character U+0007 is not allowed"),
    ("lone surrogate", GOOD.replace("name: ok", "name: o\ud800k"), 1, "character U+D800 is not allowed"),
    (
        "a python tag",
        GOOD.replace("name: ok", "name: !!python/object/apply:os.system [ls]"),
        1,
        "could not determine a constructor",
    ),
    (
        "a custom tag",
        GOOD.replace("{n: 2}", "!params {n: 2}"),
        8,
        "could not determine a constructor for the tag '!params'",
    ),
    (
        "an integer of 5000 digits",
        GOOD.replace("{n: 2}", "{n: " + "9" * 5000 + "}"),
        8,
        "as an integer: Exceeds the limit",
    ),
    (
        "an impossible date",
        GOOD + "description: 2024-13-45\n",
        14,
        "cannot read '2024-13-45' as a date: month must be in 1..12",
    ),
    (
        "a tag that does not fit",
        GOOD.replace("{n: 2}", "{n: !!int two}"),
        8,
        "cannot read 'two' as an integer",
    ),
    (
        "a boolean tag that does not fit",
        GOOD + "max_steps: !!bool maybe\n",
        14,
        "cannot read 'maybe' as a boolean",
    ),
    ("unclosed bracket", GOOD.replace("{n: 2}", "{n: 2"), 9, "invalid YAML"),
    ("bad indentation", GOOD.replace("    params: {n: 2}", "   params: {n: 2}"), 8, "invalid YAML"),
    ("too large", "name: x\n" + "#" * (MAX_BYTES + 10) + "\n", None, "too large (more than 1 MiB)"),
]


@pytest.mark.parametrize(("label", "text", "line", "fragment"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_hostile_text_is_one_clear_error(label: str, text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml_text(text, source="bad.yaml")
    message = str(info.value)
    assert "\n" not in message and len(message) <= 1100, message
    assert fragment in message, message
    if line is not None:
        assert message.startswith(f"bad.yaml:{line}: "), message
    else:
        assert message.startswith("bad.yaml"), message


@pytest.mark.parametrize("text", [laughs(), laughs(12, 20), "x: " + "[" * 100_000 + "]" * 100_000])
def test_hostile_yaml_stays_within_bounded_memory(text: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            load_yaml(text, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # the text itself is at most 1 MiB; expansion never happens


def test_aliases_and_merge_keys_that_stay_small_are_fine() -> None:
    text = """\
name: anchors
models:
  default: fake/m
verifier: math_answer
nodes:
  a:
    strategy: best_of_n
    params: &common {n: 2, temperature: 0.5}
  b:
    strategy: best_of_n
    params:
      <<: *common
      n: 3
edges:
  - {from: a, to: b}
"""
    spec = Flow.from_yaml_text(text).spec
    assert spec.nodes["b"].params == {"n": 3, "temperature": 0.5}
    assert spec.nodes["a"].params == {"n": 2, "temperature": 0.5}


def test_errors_inside_an_alias_still_name_a_line() -> None:
    text = GOOD.replace("    params: {n: 2}", "    params: &p {n: 0}") + "extra_params: *p\n"
    with pytest.raises(ConfigError, match=r"^bad\.yaml:14: extra_params: unknown field"):
        Flow.from_yaml_text(text, source="bad.yaml")


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert Flow.from_yaml(path).spec.name == "ok"
    assert Flow.from_yaml_text("\ufeff" + GOOD).spec.name == "ok"


def test_text_may_be_given_as_bytes() -> None:
    assert Flow.from_yaml_text(GOOD.encode()).spec.name == "ok"
    with pytest.raises(ConfigError, match=r"^b\.yaml:1: not UTF-8: byte 0xe9"):
        Flow.from_yaml_text("name: caf\xe9\n".encode("latin-1"), source="b.yaml")


# (label, bytes of the file, expected line or None, fragment)
FILE_CASES = [
    ("latin-1 byte", GOOD.replace("name: ok", "name: caf\xe9").encode("latin-1"), 1, "not UTF-8: byte 0xe9"),
    ("invalid byte on a later line", GOOD.encode() + b"x: \xff\n", 14, "not UTF-8: byte 0xff"),
    ("NUL bytes", GOOD.encode().replace(b"  check:", b"  ch\0eck:"), 9, "NUL byte"),
    ("UTF-16 with a BOM", GOOD.encode("utf-16"), 1, "the file is UTF-16; save it as UTF-8"),
    ("UTF-16 without a BOM", GOOD.encode("utf-16-le"), 1, "NUL byte"),
    ("UTF-32", GOOD.encode("utf-32"), 1, "the file is UTF-32"),
    ("a binary file", bytes(range(256)) * 4, 1, "NUL byte"),
    ("huge", b"name: x\n" + b"#" * (MAX_BYTES + 1), None, "flow file is too large (more than 1 MiB)"),
]


@pytest.mark.parametrize(("label", "data", "line", "fragment"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_undecodable_files(tmp_path: Path, label: str, data: bytes, line: int | None, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        Flow.from_yaml(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message


def test_paths_that_are_not_flow_files(tmp_path: Path) -> None:
    cases = [
        (tmp_path, "is a directory, not a flow file"),
        (tmp_path / "missing.yaml", "cannot read flow file: no such file"),
        ("bad\0name.yaml", "cannot read flow file"),
    ]
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came: it is refused unopened
    cases.append((fifo, "is not a regular file"))
    unreadable = tmp_path / "secret.yaml"
    unreadable.write_text(GOOD)
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # root reads anything
        cases.append((unreadable, "cannot read flow file: Permission denied"))
    for path, fragment in cases:
        with pytest.raises(ConfigError) as info:
            Flow.from_yaml(path)
        assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)
