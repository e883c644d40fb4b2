"""A picture of a finished search, drawn from its trace events.

The searches emit an :class:`ExpansionEvent` per node (``node`` is ``<search>:<key>``; the last
event of a node carries its final visits and value) and a :class:`SearchPathEvent`
naming the chosen path. :func:`render_tree` lays the tree out left to right (the root on the
left, one column per depth), colours each node by its value (red 0, yellow 0.5, green 1, grey:
not evaluated), sizes it by its visits and draws the chosen path in thick blue. Hovering a node
shows what it adds, its visits and value.

Example:
    >>> from forkpath._trace import read_trace
    >>> render_tree(read_trace("runs/x/trace.jsonl"), "runs/x/tree.html")   # or tree.svg
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forkpath._errors import ConfigError
from forkpath._trace import ExpansionEvent, SearchPathEvent

_DX = 120  # pixels per depth
_DY = 22  # pixels per leaf row
_MARGIN = 30
_LABEL = 14  # characters of a node's text shown next to it


@dataclass
class ViewNode:
    """One node as the trace tells it."""

    id: str
    parent: str | None
    text: str = ""
    value: float | None = None
    visits: int = 0
    children: list[str] = field(default_factory=list)
    depth: int = 0
    x: float = 0.0
    y: float = 0.0


@dataclass
class ViewTree:
    """One search's tree, with the chosen path when the trace names it."""

    root: str
    nodes: dict[str, ViewNode]
    path: list[str] = field(default_factory=list)
    strategy: str = ""
    namespace: str = ""


def collect_trees(events: Iterable[Any]) -> list[ViewTree]:
    """The search trees in ``events`` (typed events or their JSON dicts), in order of first appearance."""
    nodes: dict[str, ViewNode] = {}
    ends: dict[str, SearchPathEvent] = {}
    for raw in events:
        event = _typed(raw)
        if isinstance(event, ExpansionEvent):
            node = nodes.get(event.node)
            if node is None:
                node = nodes[event.node] = ViewNode(id=event.node, parent=event.parent)
            node.parent = event.parent if event.parent is not None else node.parent
            node.text = event.text or node.text
            if event.value is not None:
                node.value = event.value
            node.visits = event.visits
        elif isinstance(event, SearchPathEvent):
            ends[event.search] = event
    for node in nodes.values():
        if node.parent is not None and node.parent in nodes:
            nodes[node.parent].children.append(node.id)
    trees = []
    for root in (n for n in nodes.values() if n.parent is None or n.parent not in nodes):
        members = _subtree(nodes, root.id)
        tag = root.id.split(":", 1)[0]
        end = ends.get(tag)
        trees.append(
            ViewTree(
                root=root.id,
                nodes=members,
                path=[p for p in end.path if p in members] if end else [],
                strategy=end.strategy if end else "",
                namespace=end.namespace if end else "",
            )
        )
    return trees


def _typed(raw: Any) -> Any:
    if isinstance(raw, dict):
        kind = raw.get("type")
        if kind == "expansion":
            return ExpansionEvent.model_validate(raw)
        if kind == "search_path":
            return SearchPathEvent.model_validate(raw)
        return None
    return raw


def _subtree(nodes: dict[str, ViewNode], root: str) -> dict[str, ViewNode]:
    out: dict[str, ViewNode] = {}
    stack = [(root, 0)]
    while stack:
        key, depth = stack.pop()
        if key in out:
            continue
        node = nodes[key]
        node.depth = depth
        out[key] = node
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return out


def layout(tree: ViewTree) -> tuple[float, float]:
    """Place the nodes (leaves one row each, a parent at the middle of its children); return
    the drawing's width and height."""
    row = 0
    # Iterative post-order: token trees can be deeper than Python's recursion limit.
    stack: list[tuple[str, bool]] = [(tree.root, False)]
    while stack:
        key, children_placed = stack.pop()
        node = tree.nodes[key]
        node.x = _MARGIN + node.depth * _DX
        if not node.children:
            node.y = _MARGIN + row * _DY
            row += 1
        elif children_placed:
            node.y = (tree.nodes[node.children[0]].y + tree.nodes[node.children[-1]].y) / 2
        else:
            stack.append((key, True))
            stack.extend((child, False) for child in reversed(node.children))
    depth = max(n.depth for n in tree.nodes.values())
    return 2 * _MARGIN + depth * _DX + _DX, 2 * _MARGIN + max(row - 1, 0) * _DY + _DY


def colour(value: float | None) -> str:
    """Red (0) through yellow (0.5) to green (1); grey when not evaluated."""
    if value is None:
        return "#bbbbbb"
    v = min(max(value, 0.0), 1.0)
    red = 220 if v < 0.5 else int(220 - (v - 0.5) * 2 * 180)
    green = int(60 + v * 2 * 140) if v < 0.5 else 200
    return f"#{red:02x}{green:02x}50"


def svg(tree: ViewTree) -> str:
    """The tree as one standalone SVG document."""
    width, height = layout(tree)
    chosen = set(tree.path)
    chosen_edges = set(zip(tree.path, tree.path[1:], strict=False))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" font-size="11">'
    ]
    for node in tree.nodes.values():
        for key in node.children:
            child = tree.nodes[key]
            on_path = (node.id, key) in chosen_edges
            parts.append(
                f'<line x1="{node.x:.1f}" y1="{node.y:.1f}" x2="{child.x:.1f}" y2="{child.y:.1f}" '
                f'stroke="{"#1f5fd6" if on_path else "#999999"}" stroke-width="{3 if on_path else 1}"/>'
            )
    for node in tree.nodes.values():
        radius = 4 + 2 * math.log1p(node.visits)
        value = "not evaluated" if node.value is None else f"{node.value:.3f}"
        tip = f"{node.text}\nvisits {node.visits}, value {value}"
        stroke = ' stroke="#1f5fd6" stroke-width="3"' if node.id in chosen else ' stroke="#555555"'
        parts.append(
            f'<g><title>{html.escape(tip)}</title><circle cx="{node.x:.1f}" cy="{node.y:.1f}" '
            f'r="{radius:.1f}" fill="{colour(node.value)}"{stroke}/>'
            f'<text x="{node.x + radius + 3:.1f}" y="{node.y + 4:.1f}">{html.escape(_label(node.text))}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _label(text: str) -> str:
    shown = text.replace("\n", "⏎").replace("\t", "→")
    return shown if len(shown) <= _LABEL else shown[: _LABEL - 1] + "…"


def page(trees: list[ViewTree]) -> str:
    """A static HTML page with every tree, a summary of each and its chosen answer path."""
    sections = []
    for i, tree in enumerate(trees, 1):
        values = [n.value for n in tree.nodes.values() if n.value is not None]
        chosen_text = "".join(tree.nodes[k].text for k in tree.path[1:])
        title = f"{tree.strategy or 'search'} {i}"
        sections.append(
            f"<section><h2>{html.escape(title)}</h2>"
            f"<p>{len(tree.nodes)} nodes, depth {max(n.depth for n in tree.nodes.values())}, "
            f"root visits {tree.nodes[tree.root].visits}, best value "
            f"{max(values) if values else 'n/a'}; namespace <code>{html.escape(tree.namespace)}</code></p>"
            f'<div class="tree">{svg(tree)}</div>'
            f"<h3>Chosen path</h3><pre>{html.escape(chosen_text) or '(none)'}</pre></section>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>forkpath search tree</title><style>"
        "body{font-family:sans-serif;margin:1.5em} .tree{overflow:auto;border:1px solid #ddd}"
        "pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}</style></head><body>"
        "<h1>Search tree</h1><p>Colour: value (red 0, yellow 0.5, green 1, grey not evaluated); "
        "size: visits; blue: the chosen path. Hover a node for its text.</p>"
        + "".join(sections)
        + "</body></html>"
    )


def render_tree(events: Iterable[Any], path: str | Path) -> Path:
    """Draw the search trees in ``events`` to ``path``: an HTML page (``.html``) with every tree,
    or an SVG (``.svg``) of the last tree that has a chosen path (else the largest).

    Raises:
        ConfigError: the events hold no search tree, or the suffix is neither .html nor .svg.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".html", ".htm", ".svg"):
        raise ConfigError(f"render_tree writes .html or .svg, not {target.name!r}")
    trees = collect_trees(events)
    if not trees:
        raise ConfigError("the trace has no search tree (no expansion events)")
    if suffix == ".svg":
        with_path = [t for t in trees if t.path]
        content = svg(with_path[-1] if with_path else max(trees, key=lambda t: len(t.nodes)))
    else:
        content = page(trees)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return target
