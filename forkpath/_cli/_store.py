"""``forkpath store``: inspect and empty store namespaces.

Mounted by the core CLI as ``forkpath store stats|clear``::

    forkpath store stats --store redis://127.0.0.1:6379/0
    forkpath store stats --namespace my-project --json
    forkpath store clear --namespace my-project --yes              # the generation cache only
    forkpath store clear --namespace run-7 --what results --yes    # a batch run's results

A cache namespace and a batch run id share one name, so ``clear`` removes one area at a time
(``--what``, default ``cache``): emptying a cache never takes a run's results with it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

import typer

from forkpath._cli._term import LazyConsole, table
from forkpath._errors import ForkpathError

app = typer.Typer(
    rich_markup_mode=None,
    help="Inspect and empty store namespaces.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")

_STORE = typer.Option(
    None, "--store", help="Store URL or SQLite path (default: $FORKPATH_STORE or .forkpath/store.db)."
)
_JSON = typer.Option(False, "--json", help="Machine-readable output.")


class Area(StrEnum):
    """What ``clear`` removes (the values of :data:`forkpath.store.ClearWhat`)."""

    cache = "cache"
    trajectories = "trajectories"
    results = "results"
    all = "all"


_AREA_NAMES = {
    Area.cache: "the generation cache entries",
    Area.trajectories: "the trajectory nodes and claims",
    Area.results: "the batch results",
    Area.all: "everything (cache, trajectories, results, counters)",
}


def _console(stderr: bool = False) -> LazyConsole:
    return LazyConsole(stderr=stderr, highlight=False, soft_wrap=True)


def _run(url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store, run ``work(store)``, close it; a forkpath error becomes one line and exit 2."""
    from forkpath.store import open_store

    async def main() -> T:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        import asyncio

        return asyncio.run(main())
    except ForkpathError as e:
        _console(stderr=True).print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None


@app.command("stats")
def stats(
    store: str | None = _STORE,
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="One namespace (default: all)."),
    as_json: bool = _JSON,
) -> None:
    """Show what each namespace holds: cache entries, nodes, results, corrupt entries, evictions."""

    async def work(s: Any) -> tuple[str, list[dict[str, Any]]]:
        names = [namespace] if namespace else await s.namespaces()
        return s.url, [(await s.stats(n)).model_dump() for n in names]

    url, rows = _run(store, work)
    if as_json:
        print(json.dumps({"store": url, "namespaces": rows}, indent=2))
        return
    console = _console()
    if not rows:
        console.print(f"{url}: empty")
        return
    shown = table(title=url)
    columns = ("namespace", "cache_entries", "cache_bytes", "nodes", "results", "corrupt", "evictions")
    for column in columns:
        shown.add_column(column.replace("_", " "), justify="left" if column == "namespace" else "right")
    for row in rows:
        shown.add_row(*("-" if row[c] is None else str(row[c]) for c in columns))
    console.print(shown)


@app.command("clear")
def clear(
    namespace: str = typer.Option(..., "--namespace", "-n", help="The cache namespace or run id."),
    what: Area = typer.Option(
        Area.cache,
        "--what",
        "-w",
        help="What to remove: cache entries, trajectories (nodes, claims), a run's results, or all.",
    ),
    store: str | None = _STORE,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = _JSON,
) -> None:
    """Remove one area of a namespace; by default only its generation cache entries."""
    from forkpath.store import check_namespace

    try:
        check_namespace(namespace)
    except ForkpathError as e:
        _console(stderr=True).print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    if not yes and not typer.confirm(f"Remove {_AREA_NAMES[what]} of namespace {namespace!r}?"):
        raise typer.Exit(1)

    async def work(s: Any) -> tuple[str, int]:
        return s.url, await s.clear(namespace, what=what.value)

    url, removed = _run(store, work)
    if as_json:
        print(json.dumps({"store": url, "namespace": namespace, "what": what.value, "removed": removed}))
    else:
        _console().print(f"{url}: cleared {what.value} of namespace {namespace!r} ({removed} records)")
