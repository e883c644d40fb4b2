"""The terminal, built on first use: rich loads only when a command prints, not for ``--help``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class LazyConsole:
    """A ``rich.console.Console`` made the first time one of its attributes is used."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (for rich objects that take one, such as ``Progress``)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def table(*columns: str, **options: Any) -> Any:
    """A ``rich.table.Table`` with ``columns``."""
    from rich.table import Table

    made = Table(**options)
    for column in columns:
        made.add_column(column)
    return made


def escape(text: str) -> str:
    """``text`` with rich markup escaped (candidate output is text, never markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


console = LazyConsole()
err_console = LazyConsole(stderr=True)
