"""``forkpath view``: the run viewer's routes, mounted by the server's ASGI app factory.

Pages (each a deep link that can be shared):

- ``/``: every run under the folder (refreshed while a batch runs),
- ``/runs/<run>``: its tasks (paged, filtered), the flow's graph, the report's plots; for a
  forking-token analysis (``forks.json``), outcome probability over token index with the forking
  tokens and branch points marked, and the answer's tokens,
- ``/runs/<run>/tasks/<task>``: the prompt, each strategy run's candidates, verdicts and numbers,
- ``/runs/<run>/tree/<task>?search=<i>&node=<id>``: a search tree, expanded on demand,
- ``/runs/<run>/tokens/<task>?n=<i>&colour=entropy|model``: an answer's tokens,
- ``/compare?a=<run>&b=<run>``: two runs of one dataset, the tasks that differ first.

Pages are rendered on the server with Jinja2 (autoescaped); a little JavaScript of our own
(``view_static/assets/view.js``) expands trees, shows token alternatives and refreshes the runs
table. Bad input (an unknown run, task or node, a folder that is gone) is a page that says so.

Example:
    >>> app = Starlette(routes=view_routes(Path("runs")))
"""

from __future__ import annotations

import functools
import html
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from forkpath._trace import FlowEvent, TokensEvent
from forkpath._tree_view import ViewTree
from forkpath.server import _view_render as render
from forkpath.server._view_forks import forks_context
from forkpath.server._view_runs import (
    Run,
    RunCatalog,
    TaskRow,
    TraceIndex,
    first_flow_event,
    flow_task_key,
    trace_notes,
)

__all__ = ["ViewError", "view_error_page", "view_routes"]

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "view_static"
TASKS_PER_PAGE = 50
EVENTS_PER_PAGE = 100
COMPARE_PER_PAGE = 100
MAX_CHILDREN = 500
TREES_KEPT = 4
OUTCOMES = ("passed", "failed", "unverified", "error", "timeout", "budget")
PLOTS = ("accuracy_vs_cost.png", "tokens_per_task.png")
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'"
"""Only our own scripts run, whatever a candidate's text holds (inline styles colour the tokens)."""


class ViewError(Exception):
    """A request the viewer cannot answer, with the status and the sentence to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(STATIC / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=render.when,
        duration=render.duration,
        percent=render.percent,
        number=render.number,
        shown=render.shown,
        visible=render.visible,
        segment=lambda s: quote(str(s), safe=""),
        taskpath=lambda s: quote(str(s), safe="/"),
    )
    return env


Handler = Callable[[Request], Response]


class _Viewer:
    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.catalog = RunCatalog(runs_dir)
        self.env = _environment()
        self.trees: dict[tuple[Path, int], list[ViewTree]] = {}
        self.lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------------
    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        body = self.env.get_template(template).render(base=base, runs_dir=str(self.runs_dir), **context)
        return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CSP})

    def run(self, request: Request) -> Run:
        if not self.runs_dir.is_dir():
            raise ViewError(404, f"the runs folder {self.runs_dir} is gone")
        key = request.path_params["run"]
        run = self.catalog.get(key)
        if run is None:
            raise ViewError(404, f"no run {key!r} under {self.runs_dir}")
        return run

    def task(self, request: Request, run: Run) -> str:
        task_id = request.path_params["task"]
        if not run.has_task(task_id):
            raise ViewError(404, f"run {run.key!r} has no task {task_id!r}")
        return task_id

    def task_trace(self, run: Run, task_id: str) -> TraceIndex:
        path = run.trace_path(task_id)
        if path is None:
            raise ViewError(404, f"task {task_id!r} of run {run.key!r} has no trace")
        return self.catalog.trace(path)

    # -- pages -------------------------------------------------------------------------------------
    def runs_page(self, request: Request) -> Response:
        return self.page(request, "runs.html", runs=self._runs(), title="Runs")

    def runs_table(self, request: Request) -> Response:
        return self.page(request, "runs_table.html", runs=self._runs())

    def runs_json(self, request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "run": r.key,
                    "kind": r.kind,
                    "flow": r.flow,
                    "dataset": r.dataset,
                    "status": r.status,
                    "done": r.done,
                    "total": r.total,
                    "pass_rate": r.pass_rate,
                    "tokens": r.tokens,
                    "cost": r.cost,
                    "wall_s": r.wall_s,
                    "started": r.started,
                    "finished": r.finished,
                }
                for r in self._runs()
            ]
        )

    def _runs(self) -> list[Run]:
        if not self.runs_dir.is_dir():
            raise ViewError(404, f"the runs folder {self.runs_dir} is gone")
        return self.catalog.list()

    def run_page(self, request: Request) -> Response:
        run = self.run(request)
        if run.kind == "forks":
            return self.forks_page(request, run)
        outcome = request.query_params.get("outcome", "")
        failed_only = request.query_params.get("failed") == "1"
        if outcome and outcome not in OUTCOMES:
            raise ViewError(400, f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        rows = run.rows
        if run.kind == "flow":
            rows = [self._flow_row(run)]
        counts = {o: sum(1 for r in rows if r.outcome == o) for o in OUTCOMES}
        if failed_only:
            rows = [r for r in rows if r.outcome != "passed"]
        if outcome:
            rows = [r for r in rows if r.outcome == outcome]
        page, pages = _page_number(request, len(rows), TASKS_PER_PAGE)
        shown_rows = rows[(page - 1) * TASKS_PER_PAGE : page * TASKS_PER_PAGE]
        answers = self._answers(run, shown_rows)
        start = self._flow_start(run)
        query = {k: v for k, v in (("outcome", outcome), ("failed", "1" if failed_only else "")) if v}
        return self.page(
            request,
            "run.html",
            title=run.key,
            run=run,
            rows=shown_rows,
            answers=answers,
            counts=counts,
            outcomes=OUTCOMES,
            outcome=outcome,
            failed_only=failed_only,
            page_no=page,
            pages=pages,
            query=urlencode(query),
            graph=render.flow_svg(start) if start is not None else None,
            plots=[p for p in PLOTS if (run.dir / p).is_file()],
            notes=run.notes,
        )

    def forks_page(self, request: Request, run: Run) -> Response:
        if run.forks is None:
            raise ViewError(
                404, f"run {run.key!r} has a forks.json that cannot be read: {'; '.join(run.notes)}"
            )
        return self.page(
            request, "forks.html", title=f"{run.key} · forks", run=run, **forks_context(run.forks)
        )

    def _flow_row(self, run: Run) -> TaskRow:
        trace = run.trace
        assert trace is not None
        end = trace.flow_end
        passed = end.passed if end is not None else None
        return TaskRow(
            task_id=flow_task_key(trace),
            offset=0,
            status="ok" if end is not None else run.status,
            passed=passed,
            score=end.score if end is not None else None,
            tokens=trace.tokens,
            cost=trace.cost,
            calls=trace.calls,
            latency_s=(trace.last_time or 0.0) - (trace.first_time or 0.0),
            stopped=end.stopped if end is not None and end.stopped == "budget" else None,
            answer_hash=hash(end.answer if end else None),
            has_trace=True,
        )

    def _answers(self, run: Run, rows: list[TaskRow]) -> dict[str, str]:
        if run.kind == "flow":
            end = run.trace.flow_end if run.trace else None
            return {rows[0].task_id: (end.answer or "") if end else ""}
        assert run.records is not None
        out = {}
        for row in rows:
            record = run.records.record(row.task_id)
            out[row.task_id] = (record.answer or record.error or "") if record else ""
        return out

    def _flow_start(self, run: Run) -> FlowEvent | None:
        if run.kind == "flow":
            return run.trace.flow_start if run.trace else None
        for row in run.rows:
            path = run.trace_path(row.task_id) if row.has_trace else None
            if path is not None:
                return first_flow_event(path)
        return None

    def plot(self, request: Request) -> Response:
        run = self.run(request)
        name = request.path_params["name"]
        if name not in PLOTS or not (run.dir / name).is_file():
            raise ViewError(404, f"run {run.key!r} has no plot {name!r}")
        return FileResponse(run.dir / name, media_type="image/png")

    def task_page(self, request: Request) -> Response:
        run = self.run(request)
        task_id = self.task(request, run)
        record = run.records.record(task_id) if run.records is not None else None
        path = run.trace_path(task_id)
        trace = self.catalog.trace(path) if path is not None else None
        task = render.read_task(trace) if trace is not None else None
        events: list[dict[str, str]] = []
        page, pages = 1, 1
        if trace is not None:
            page, pages = _page_number(request, len(trace), EVENTS_PER_PAGE, "events")
            positions = list(range((page - 1) * EVENTS_PER_PAGE, min(page * EVENTS_PER_PAGE, len(trace))))
            events = [render.event_row(e, trace.first_time) for _, e in trace.events(positions)]
        # after reading: lines that turned out unreadable are counted by now
        notes = [*(run.notes if run.kind == "batch" else []), *(trace_notes(trace) if trace else [])]
        return self.page(
            request,
            "task.html",
            title=f"{run.key} · {task_id}",
            run=run,
            task_id=task_id,
            record=record,
            trace=trace,
            task=task,
            events=events,
            page_no=page,
            pages=pages,
            expansions=render.expansion_count(trace) if trace is not None else 0,
            notes=notes,
        )

    def tree_page(self, request: Request) -> Response:
        run = self.run(request)
        task_id = self.task(request, run)
        trees = self._trees(run, task_id)
        index, tree = self._tree(request, trees, run, task_id)
        node = request.query_params.get("node")
        if node is not None and node not in tree.nodes:
            raise ViewError(404, f"search {index} of task {task_id!r} has no node {node!r}")
        chosen = "".join(tree.nodes[k].text for k in tree.path[1:])
        values = [n.value for n in tree.nodes.values() if n.value is not None]
        return self.page(
            request,
            "tree.html",
            title=f"{run.key} · {task_id} · tree",
            run=run,
            task_id=task_id,
            trees=trees,
            index=index,
            tree=tree,
            chosen=chosen,
            depth=max(n.depth for n in tree.nodes.values()),
            best=max(values) if values else None,
            init={
                "api": f"/api/runs/{quote(run.key, safe='')}/tree/{quote(task_id, safe='/')}",
                "page": f"/runs/{quote(run.key, safe='')}/tree/{quote(task_id, safe='/')}",
                "search": index,
                "root": tree.root,
                "path": tree.path,
                "focus": render.ancestors(tree, node) if node else [],
            },
        )

    def tree_json(self, request: Request) -> Response:
        run = self.run(request)
        task_id = self.task(request, run)
        trees = self._trees(run, task_id)
        _, tree = self._tree(request, trees, run, task_id)
        key = request.query_params.get("node", tree.root)
        if key not in tree.nodes:
            raise ViewError(404, f"no node {key!r} in this tree")
        on_path = set(tree.path)
        children = tree.nodes[key].children
        return JSONResponse(
            {
                "node": render.tree_node(tree, key, on_path),
                "children": [render.tree_node(tree, c, on_path) for c in children[:MAX_CHILDREN]],
                "more": max(0, len(children) - MAX_CHILDREN),
            }
        )

    def _trees(self, run: Run, task_id: str) -> list[ViewTree]:
        trace = self.task_trace(run, task_id)
        key = (trace.path, trace.consumed)
        with self.lock:
            trees = self.trees.get(key)
        if trees is None:  # built once per trace (and again when it grows): expanding asks often
            trees = render.read_trees(trace)
            with self.lock:
                self.trees[key] = trees
                while len(self.trees) > TREES_KEPT:
                    self.trees.pop(next(iter(self.trees)))
        if not trees:
            raise ViewError(404, f"task {task_id!r} of run {run.key!r} has no search tree")
        return trees

    def _tree(self, request: Request, trees: list[ViewTree], run: Run, task_id: str) -> tuple[int, ViewTree]:
        raw = request.query_params.get("search", "")
        if raw == "":
            with_path = [i for i, t in enumerate(trees) if t.path]
            index = with_path[-1] if with_path else 0
        else:
            index = _int(raw, "search")
        if not 0 <= index < len(trees):
            raise ViewError(404, f"task {task_id!r} of run {run.key!r} has no search {index}")
        return index, trees[index]

    def tokens_page(self, request: Request) -> Response:
        run = self.run(request)
        task_id = self.task(request, run)
        trace = self.task_trace(run, task_id)
        positions = trace.positions("tokens")
        if not positions:
            raise ViewError(
                404,
                f"task {task_id!r} of run {run.key!r} has no token detail: its strategies do not record "
                "tokens, or the trace was written by an older forkpath",
            )
        n = _int(request.query_params.get("n", str(len(positions) - 1)), "n")
        if not 0 <= n < len(positions):
            raise ViewError(404, f"task {task_id!r} has no token record {n} (it has {len(positions)})")
        event = trace.event(positions[n])
        if not isinstance(event, TokensEvent):
            raise ViewError(404, f"token record {n} of task {task_id!r} cannot be read (a damaged line)")
        colour = request.query_params.get("colour", "model" if len(event.models) > 1 else "entropy")
        if colour not in ("entropy", "model"):
            raise ViewError(400, f"colour is entropy or model, not {colour!r}")
        tokens, top = render.token_views(event, colour)
        counts = [sum(1 for t in event.tokens if t.model == i) for i in range(len(event.models))]
        return self.page(
            request,
            "tokens.html",
            title=f"{run.key} · {task_id} · tokens",
            run=run,
            task_id=task_id,
            event=event,
            tokens=tokens,
            tips=[t["tip"] for t in tokens],
            top=top,
            colour=colour,
            n=n,
            records=len(positions),
            counts=counts,
            palette=render.PALETTE,
            scale=[render.entropy_colour(top * i / 4, top) for i in range(5)],
        )

    def compare_page(self, request: Request) -> Response:
        runs = [r for r in self._runs() if r.kind == "batch"]
        a_key, b_key = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a_key or not b_key:
            return self.page(request, "compare_pick.html", title="Compare", runs=runs)
        found = {r.key: r for r in runs}
        for key in (a_key, b_key):
            if key not in found:
                raise ViewError(404, f"no batch run {key!r} under {self.runs_dir} to compare")
        a, b = found[a_key], found[b_key]
        left = {r.task_id: r for r in a.rows}
        right = {r.task_id: r for r in b.rows}
        rows = render.compare_rows(left, right)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["diff"]] = counts.get(row["diff"], 0) + 1
        page, pages = _page_number(request, len(rows), COMPARE_PER_PAGE)
        rows = rows[(page - 1) * COMPARE_PER_PAGE : page * COMPARE_PER_PAGE]
        for row in rows:  # the answers of the rows shown, read from their records
            for side, run in (("a", a), ("b", b)):
                record = run.records.record(row["task_id"]) if run.records and row[side] else None
                row[side + "_answer"] = (record.answer or record.error or "") if record else ""
        shared = len(left.keys() & right.keys())
        return self.page(
            request,
            "compare.html",
            title=f"{a.key} vs {b.key}",
            a=a,
            b=b,
            rows=rows,
            counts=counts,
            shared=shared,
            page_no=page,
            pages=pages,
            query=urlencode({"a": a.key, "b": b.key}),
        )


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ViewError(400, f"{name} is a number, not {raw!r}") from None


def _page_number(request: Request, items: int, per_page: int, name: str = "page") -> tuple[int, int]:
    pages = max(1, math.ceil(items / per_page))
    page = _int(request.query_params.get(name, "1"), name)
    if not 1 <= page <= pages:
        raise ViewError(404, f"{name} {page} is out of range (1 to {pages})")
    return page, pages


def _guarded(viewer: _Viewer, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run ``handler`` off the event loop (it reads files); turn what goes wrong into a page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await run_in_threadpool(handler, request)
        except ViewError as e:
            return _error(viewer, request, e.status, e.message)
        except Exception as e:  # a bug: say what it was, without a traceback on the page
            logger.exception("viewer: %s failed", request.url.path)
            return _error(viewer, request, 500, f"the viewer failed on this page: {type(e).__name__}: {e}")

    return endpoint


def _error(viewer: _Viewer, request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith(request.scope.get("root_path", "") + "/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return viewer.page(request, "error.html", status=status, title="Not found", message=message)


def view_routes(runs_dir: Path) -> list[BaseRoute]:
    """The viewer's routes over the runs under ``runs_dir``; mount them at ``/`` or under a prefix."""
    viewer = _Viewer(runs_dir)
    pages: list[tuple[str, Handler]] = [
        ("/", viewer.runs_page),
        ("/runs-table", viewer.runs_table),
        ("/api/runs", viewer.runs_json),
        ("/runs/{run}", viewer.run_page),
        ("/runs/{run}/plots/{name}", viewer.plot),
        ("/runs/{run}/tasks/{task:path}", viewer.task_page),
        ("/runs/{run}/tree/{task:path}", viewer.tree_page),
        ("/runs/{run}/tokens/{task:path}", viewer.tokens_page),
        ("/api/runs/{run}/tree/{task:path}", viewer.tree_json),
        ("/compare", viewer.compare_page),
    ]
    routes: list[BaseRoute] = [Route(path, _guarded(viewer, handler)) for path, handler in pages]
    routes.append(Mount("/assets", StaticFiles(directory=STATIC / "assets"), name="view-assets"))
    return routes


async def view_error_page(request: Request, exc: Exception) -> Response:
    """The viewer's page for an unknown path or method (JSON under ``/api/``)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    what = "no such page" if status == 404 else "this request cannot be answered"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": f"{what}: {request.url.path}"}, status_code=status)
    body = (
        "<!doctype html><meta charset='utf-8'><title>forkpath view</title><link rel='icon' href='data:,'>"
        f"<p>{html.escape(what)}: <code>{html.escape(request.url.path)}</code>. "
        "<a href='/'>All runs</a></p>"
    )
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CSP})
