"""What the viewer's pages show, computed from the indexes of ``_view_runs``: the flow graph as
SVG, a task's strategy runs and candidates, a search tree's nodes, an answer's tokens, two runs
compared. Every piece of run data that reaches HTML here goes through :func:`html.escape` (the
templates escape the rest)."""

from __future__ import annotations

import html
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from forkpath._trace import (
    CandidateEvent,
    ExpansionEvent,
    FlowEvent,
    NodeEvent,
    SearchPathEvent,
    StrategyEvent,
    TokensEvent,
    TraceEvent,
    VerdictEvent,
)
from forkpath._tree_view import ViewTree, collect_trees
from forkpath.server._view_runs import TaskRow, TraceIndex

KEY_EVENTS = ("flow", "strategy", "candidate", "verdict", "node", "tokens", "search_path", "budget", "note")
"""The events a task page reads in full (model calls, expansions and routing are counted only)."""
MAX_KEY_EVENTS = 5000
MAX_CANDIDATES = 200
"""Candidates listed per strategy run (a long search can return thousands)."""


# -- small formats ------------------------------------------------------------------------------
def when(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def duration(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


def percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def number(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def shown(value: Any, limit: int = 400) -> str:
    """A value as short text: strings as they are, the rest as JSON, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def visible(text: str, limit: int = 60) -> str:
    """Whitespace made visible, cut at ``limit`` characters (for one-line labels)."""
    out = text.replace("\n", "⏎").replace("\t", "→")
    return out if len(out) <= limit else out[: limit - 1] + "…"


# -- the flow's graph ------------------------------------------------------------------------------
_BOX_W, _BOX_H, _GAP_X, _GAP_Y = 190, 42, 30, 46


def flow_svg(start: FlowEvent) -> str:
    """The flow's graph from its start event: nodes in layers by distance from the first node,
    ``end`` last, conditions on the edges. Escaped SVG markup."""
    names = [*start.nodes, "end"]
    first = start.first or (names[0] if names else "end")
    nexts: dict[str, list[str]] = {n: [] for n in names}
    for e in start.edges:
        nexts.setdefault(e.source, []).append(e.target)
        nexts.setdefault(e.target, [])
    layer = {first: 0}
    queue = deque([first])
    while queue:
        node = queue.popleft()
        for target in nexts.get(node, []):
            if target not in layer and target != "end":
                layer[target] = layer[node] + 1
                queue.append(target)
    depth = max(layer.values(), default=0)
    for name in nexts:
        if name not in layer and name != "end":
            depth += 1
            layer[name] = depth
    layer["end"] = depth + 1
    rows: dict[int, list[str]] = {}
    for name in nexts:
        rows.setdefault(layer[name], []).append(name)
    widest = max(len(r) for r in rows.values())
    width = widest * (_BOX_W + _GAP_X) + _GAP_X
    height = (depth + 2) * (_BOX_H + _GAP_Y) + _GAP_Y
    pos: dict[str, tuple[float, float]] = {}
    for level, members in rows.items():
        offset = (width - len(members) * (_BOX_W + _GAP_X) + _GAP_X) / 2
        for i, name in enumerate(members):
            pos[name] = (offset + i * (_BOX_W + _GAP_X), _GAP_Y + level * (_BOX_H + _GAP_Y))
    esc = html.escape
    parts = [
        f'<svg class="flow" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="flow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for e in start.edges:
        if e.source not in pos or e.target not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        if layer[e.target] > layer[e.source]:
            path = f"M {x1 + _BOX_W / 2:.0f} {y1 + _BOX_H:.0f} L {x2 + _BOX_W / 2:.0f} {y2:.0f}"
            lx, ly = (x1 + x2) / 2 + _BOX_W / 2 + 4, (y1 + _BOX_H + y2) / 2
        else:  # a loop back: around the right side
            sx, sy, tx, ty = x1 + _BOX_W, y1 + _BOX_H / 2, x2 + _BOX_W, y2 + _BOX_H / 2
            bulge = 40 + 12 * abs(layer[e.source] - layer[e.target])
            path = f"M {sx:.0f} {sy:.0f} C {sx + bulge:.0f} {sy:.0f}, {tx + bulge:.0f} {ty:.0f}, {tx:.0f} {ty - 6:.0f}"
            lx, ly = max(sx, tx) + bulge / 2 + 4, (sy + ty) / 2
        parts.append(f'<path d="{path}" fill="none" stroke="#555" marker-end="url(#arrow)"/>')
        if e.when:
            parts.append(f'<text class="when" x="{lx:.0f}" y="{ly:.0f}">{esc(visible(e.when, 30))}</text>')
    for name, (x, y) in pos.items():
        what = "finish" if name == "end" else start.nodes.get(name, "")
        css = "end" if name == "end" else "first" if name == first else "node"
        parts.append(
            f'<g class="{css}"><rect x="{x:.0f}" y="{y:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="8"/>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 17:.0f}" text-anchor="middle" class="name">{esc(visible(name, 26))}</text>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 33:.0f}" text-anchor="middle">{esc(visible(what, 30))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- a task's trace ------------------------------------------------------------------------------
@dataclass
class CandidateView:
    index: int
    text: str
    model: str
    chosen: bool = False
    passed: bool | None = None
    score: float | None = None
    tokens: int | None = None
    answer: str | None = None
    verdict: dict[str, Any] | None = None
    detail: str = ""


@dataclass
class StrategyRun:
    name: str
    span: str | None
    params: dict[str, Any] = field(default_factory=dict)
    candidates: list[CandidateView] = field(default_factory=list)
    verdicts: list[VerdictEvent] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    tokens_events: list[int] = field(default_factory=list)
    """Positions (in the trace) of this run's token events."""

    @property
    def shown_candidates(self) -> list[CandidateView]:
        """The first :data:`MAX_CANDIDATES` candidates, and the chosen one wherever it is."""
        head = self.candidates[:MAX_CANDIDATES]
        return head + [c for c in self.candidates[MAX_CANDIDATES:] if c.chosen]

    @property
    def hidden_candidates(self) -> int:
        return len(self.candidates) - len(self.shown_candidates)


@dataclass
class TaskTrace:
    start: FlowEvent | None = None
    end: FlowEvent | None = None
    runs: list[StrategyRun] = field(default_factory=list)
    nodes: list[NodeEvent] = field(default_factory=list)
    tokens_events: list[int] = field(default_factory=list)
    searches: int = 0
    truncated: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def read_task(trace: TraceIndex) -> TaskTrace:
    """Group a task's key events: strategy runs with their candidates, verdicts and info."""
    positions = trace.positions(*KEY_EVENTS)
    out = TaskTrace(counts=dict(trace.counts))
    if len(positions) > MAX_KEY_EVENTS:
        positions, out.truncated = positions[:MAX_KEY_EVENTS], True
    stack: list[StrategyRun] = []
    for position, event in trace.events(positions):
        if isinstance(event, FlowEvent):
            if event.phase == "start" and out.start is None:
                out.start = event
            elif event.phase == "end":
                out.end = event
        elif isinstance(event, StrategyEvent):
            if event.phase == "start":
                run = StrategyRun(name=event.name, span=event.span, params=event.params)
                out.runs.append(run)
                stack.append(run)
            else:
                ended = _pop(stack, event.name)
                if ended is None:
                    ended = StrategyRun(name=event.name, span=event.span)
                    out.runs.append(ended)
                ended.info, ended.stopped = event.info, event.stopped
        elif isinstance(event, CandidateEvent):
            owner = _find(stack, event.strategy) or _last(out.runs, event.strategy)
            if owner is None:
                owner = StrategyRun(name=event.strategy, span=event.span)
                out.runs.append(owner)
            owner.candidates.append(
                CandidateView(
                    index=event.index,
                    text=event.text,
                    model=event.model,
                    chosen=event.chosen,
                    passed=event.passed,
                    score=event.score,
                    tokens=event.tokens,
                    answer=event.answer,
                    verdict=event.verdict,
                )
            )
        elif isinstance(event, VerdictEvent):
            if stack:
                stack[-1].verdicts.append(event)
        elif isinstance(event, TokensEvent):
            out.tokens_events.append(position)
            owner = _find(stack, event.span or "") or (stack[-1] if stack else None)
            if owner is not None:
                owner.tokens_events.append(position)
        elif isinstance(event, NodeEvent) and event.phase == "end":
            out.nodes.append(event)
        elif isinstance(event, SearchPathEvent):
            out.searches += 1
    return out


def _pop(stack: list[StrategyRun], name: str) -> StrategyRun | None:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].name == name:
            return stack.pop(i)
    return None


def _find(stack: list[StrategyRun], name: str) -> StrategyRun | None:
    return next((run for run in reversed(stack) if run.name == name), None)


def _last(runs: list[StrategyRun], name: str) -> StrategyRun | None:
    return next((run for run in reversed(runs) if run.name == name), None)


def event_row(event: TraceEvent, t0: float | None) -> dict[str, str]:
    """One line of a task's event table."""
    detail = {
        k: v
        for k, v in event.model_dump(mode="json").items()
        if k not in ("time", "span", "type") and v not in (None, {}, [], "")
    }
    return {
        "t": f"{event.time - t0:.3f}" if t0 is not None else "",
        "span": event.span or "",
        "type": event.type,
        "detail": shown(detail, 300),
    }


# -- search trees --------------------------------------------------------------------------------
def read_trees(trace: TraceIndex) -> list[ViewTree]:
    positions = trace.positions("expansion", "search_path")
    return collect_trees(event for _, event in trace.events(positions))


def tree_node(tree: ViewTree, key: str, on_path: set[str]) -> dict[str, Any]:
    node = tree.nodes[key]
    return {
        "id": node.id,
        "label": visible(node.text, 48) if node.text else ("(root)" if node.parent is None else "(empty)"),
        "text": node.text,
        "visits": node.visits,
        "value": node.value,
        "depth": node.depth,
        "children": len(node.children),
        "on_path": node.id in on_path,
    }


def ancestors(tree: ViewTree, key: str) -> list[str]:
    """The node ids from the root down to ``key``."""
    chain = []
    current: str | None = key
    while current is not None and current in tree.nodes:
        chain.append(current)
        current = tree.nodes[current].parent
    return list(reversed(chain))


def expansion_count(trace: TraceIndex) -> int:
    return trace.counts.get(ExpansionEvent.model_fields["type"].default, 0)


# -- tokens --------------------------------------------------------------------------------------
PALETTE = ("#cfe3ff", "#ffd6a8", "#c9f0c9", "#f3c6f3", "#fff2a8", "#d9d9d9")
"""Background of the tokens of model 0, 1, ... (colour by model)."""


def entropy_colour(value: float | None, top: float) -> str:
    if value is None:
        return "#eeeeee"
    share = min(max(value / top, 0.0), 1.0) if top > 0 else 0.0
    green_blue = int(255 - share * 170)
    return f"rgb(255,{green_blue},{green_blue})"


def token_views(event: TokensEvent, colour: str) -> tuple[list[dict[str, Any]], float]:
    """Each token with its background colour and hover detail; and the top of the entropy scale."""
    top = max((t.entropy for t in event.tokens if t.entropy is not None), default=0.0)
    out = []
    for t in event.tokens:
        background = PALETTE[t.model % len(PALETTE)] if colour == "model" else entropy_colour(t.entropy, top)
        out.append(
            {
                "text": t.text,
                "background": background,
                "tip": {
                    "token": t.text,
                    "logprob": t.logprob,
                    "entropy": t.entropy,
                    "model": event.models[t.model] if t.model < len(event.models) else str(t.model),
                    "top": [[alt, lp] for alt, lp in t.top],
                },
            }
        )
    return out, top


# -- comparing two runs ---------------------------------------------------------------------------
ORDER = {"outcome differs": 0, "answer differs": 1, "only in A": 2, "only in B": 3, "same": 4}


def compare_rows(a: dict[str, TaskRow], b: dict[str, TaskRow]) -> list[dict[str, Any]]:
    """One row per task of either run, the tasks whose outcome differs first."""
    rows = []
    for task_id in dict.fromkeys([*a, *b]):
        left, right = a.get(task_id), b.get(task_id)
        if left is None:
            diff = "only in B"
        elif right is None:
            diff = "only in A"
        elif left.outcome != right.outcome:
            diff = "outcome differs"
        elif left.answer_hash != right.answer_hash:
            diff = "answer differs"
        else:
            diff = "same"
        rows.append({"task_id": task_id, "a": left, "b": right, "diff": diff})
    rows.sort(key=lambda r: ORDER[str(r["diff"])])
    return rows
