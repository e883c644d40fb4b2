"""Command: ``forkpath view``, the run viewer on a local port."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import typer

from forkpath._cli._term import console
from forkpath._errors import ConfigError

app = typer.Typer(rich_markup_mode=None)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("view")
def view(
    runs_dir: Path = typer.Argument(Path("runs"), help="The folder of runs (or one run's folder)."),
    port: int = typer.Option(7575, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="A loopback address (the viewer has no login)."),
) -> None:
    """Browse runs in a local web app: tasks, candidates, search trees, tokens, comparisons."""
    if not runs_dir.exists():
        raise ConfigError(f"no folder {runs_dir} (give the folder your runs are in, e.g. runs/)")
    if not runs_dir.is_dir():
        raise ConfigError(f"{runs_dir} is a file; give the folder your runs are in")
    if not _loopback(host):
        raise ConfigError(
            f"--host {host} is not a loopback address: the viewer has no login, so it serves this machine only"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a port number")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror} (another --port?)") from None

    try:
        import uvicorn

        from forkpath.server import create_view_app
    except ImportError as e:
        raise ConfigError(f"forkpath view needs {e.name}: pip install 'forkpath[view]'") from None

    shown_host = f"[{host}]" if ":" in host else host
    console.print(
        f"forkpath view: {runs_dir.resolve()} at http://{shown_host}:{port}/ (Ctrl-C stops)", highlight=False
    )
    uvicorn.run(create_view_app(runs_dir), host=host, port=port, log_level="warning")
