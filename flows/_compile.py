"""Compilation of a flow into a LangGraph ``StateGraph``: the only module that imports LangGraph.

Each node becomes a graph node; the edges leaving a node become one conditional edge whose
router tries them in order (the first whose ``when`` holds and whose targets still have visits
left). A list of targets fans out in parallel; ``end`` maps to LangGraph's ``END``. Checkpoints
go to SQLite through ``langgraph-checkpoint-sqlite``, keyed by run id, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from langgraph.errors import GraphRecursionError
from langgraph.graph import END as LG_END
from langgraph.graph import START, StateGraph

from forkpath._errors import FlowError
from forkpath.flows._nodes import FlowRuntime, FlowState, make_node
from forkpath.flows._schema import END, EdgeSpec

_env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)
log = logging.getLogger(__name__)


def _holds(condition: Any, variables: dict[str, Any], when: str | None, warned: set[str | None]) -> bool:
    """Whether an edge's condition holds; one that cannot be evaluated (``score >= 0.5`` while
    ``score`` is None, before any verifier ran) is false, as a comparison with SQL's NULL is."""
    try:
        return bool(condition(**variables))
    except Exception as e:
        if when not in warned:  # once per condition and run, not once per step
            warned.add(when)
            log.warning("condition %r counts as false: %s: %s", when, type(e).__name__, e)
        return False


def _router(source: str, edges: list[EdgeSpec], runtime: FlowRuntime) -> Callable[[FlowState], Any]:
    spec = runtime.spec
    compiled = [(edge, _env.compile_expression(edge.when) if edge.when else None) for edge in edges]
    warned: set[str | None] = set()

    def route(state: FlowState) -> str | list[str]:
        variables = runtime.context_vars(state)
        visits = variables["visits"]
        for edge, condition in compiled:
            if condition is not None and not _holds(condition, variables, edge.when, warned):
                continue
            targets = [
                t
                for t in edge.targets
                if t == END or spec.nodes[t].max_visits is None or visits[t] < (spec.nodes[t].max_visits or 0)
            ]
            if not targets:
                continue  # every target of this edge has used up its visits: try the next edge
            mapped = [LG_END if t == END else t for t in targets]
            return mapped[0] if len(mapped) == 1 else mapped
        return LG_END

    route.__name__ = f"route_{source}"
    return route


def compile_graph(runtime: FlowRuntime, checkpointer: Any = None) -> Any:
    """The compiled LangGraph graph of ``runtime.spec``."""
    spec = runtime.spec
    graph: StateGraph[FlowState] = StateGraph(FlowState)
    for name, node in spec.nodes.items():
        graph.add_node(name, make_node(name, node, runtime))
    graph.add_edge(START, spec.first)
    by_source: dict[str, list[EdgeSpec]] = {name: [] for name in spec.nodes}
    for edge in spec.edges:
        by_source[edge.source].append(edge)
    for source, edges in by_source.items():
        if not edges:
            graph.add_edge(source, LG_END)
            continue
        targets = {t for edge in edges for t in edge.targets}
        path_map = {t: (LG_END if t == END else t) for t in targets} | {LG_END: LG_END}
        graph.add_conditional_edges(source, _router(source, edges, runtime), path_map)  # type: ignore[arg-type]
    return graph.compile(checkpointer=checkpointer)


def graph_structure(runtime: FlowRuntime) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """Nodes and (source, target, conditional) edges of the compiled graph, for comparisons."""
    drawable = compile_graph(runtime).get_graph()
    nodes = sorted(drawable.nodes)
    edges = sorted((e.source, e.target, bool(e.conditional)) for e in drawable.edges)
    return nodes, edges


@asynccontextmanager
async def checkpointer_at(path: Path | None) -> AsyncIterator[Any]:
    """A SQLite checkpointer at ``path`` (None: no checkpoints)."""
    if path is None:
        yield None
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        yield saver


async def stream_run(
    runtime: FlowRuntime, initial: FlowState | None, run_id: str, checkpoint_path: Path | None
) -> AsyncIterator[tuple[str, dict[str, Any], FlowState]]:
    """Run (or resume, when ``initial`` is None) and yield ``(node, update, state)`` per step."""
    async with checkpointer_at(checkpoint_path) as saver:
        app = compile_graph(runtime, saver)
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": runtime.spec.max_steps}
        state: FlowState = dict(initial or {})  # type: ignore[assignment]
        if saver is not None:
            if initial is None:
                state = dict((await app.aget_state(config)).values)  # type: ignore[assignment]
            else:
                # A fresh start under a run id that already has checkpoints (a retry, a rerun):
                # LangGraph would merge the new input into the old state, so drop the old thread.
                await saver.setup()
                await saver.adelete_thread(run_id)
        try:
            async for mode, chunk in app.astream(initial, config=config, stream_mode=["updates", "values"]):
                if mode == "values":
                    state = dict(chunk)  # type: ignore[assignment]
                    continue
                for node, update in chunk.items():
                    if update:
                        yield node, update, state
        except GraphRecursionError:
            raise FlowError(
                f"flow {runtime.spec.name!r} ran more than max_steps={runtime.spec.max_steps} node executions; "
                "raise max_steps or lower the max_visits of its loops"
            ) from None
        yield "__end__", {}, state
