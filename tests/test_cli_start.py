"""The CLI starts cold: ``forkpath --help`` and every command's ``--help`` load typer and the
CLI's own modules, not the library (its speed is measured by ``bench/cli_start.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "networkx",
    "langgraph",
    "litellm",
    "llama_cpp",
    "redis",
    "yaml",
    "jinja2",
    "matplotlib",
    "pydantic",
    "rich",
    "asyncio",
    "forkpath.models",
    "forkpath.flows",
    "forkpath.strategies",
    "forkpath.verifiers",
    "forkpath.store",
    "forkpath.routers",
    "forkpath.batch",
    "forkpath.sweep",
    "forkpath.server",
    "starlette",
    "uvicorn",
)
"""Modules (and their submodules) that neither importing the CLI nor printing help may load."""


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        f"heavy = {HEAVY!r}\n"
        "import json; print(json.dumps(sorted({h for h in heavy for m in sys.modules "
        "if m == h or m.startswith(h + '.')})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_nothing_heavy() -> None:
    assert _loaded_after("import forkpath, forkpath._cli") == []


COMMANDS = [
    [],
    ["run"],
    ["validate"],
    ["graph"],
    ["batch"],
    ["sweep"],
    ["report"],
    ["compare"],
    ["verify"],
    ["models", "list"],
    ["models", "pull"],
    ["trace", "show"],
    ["store", "stats"],
    ["store", "clear"],
    ["router", "label"],
    ["router", "calibrate"],
    ["serve"],
    ["view"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "forkpath")
def test_help_loads_nothing_heavy(command: list[str]) -> None:
    code = (
        "import contextlib, io\n"
        "from forkpath._cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        f"    app({[*command, '--help']!r}, prog_name='forkpath')\n"
        "assert 'Usage:' in out.getvalue(), out.getvalue()\n"
    )
    assert _loaded_after(code) == []
