"""Pictures of a flow: Mermaid text, and an SVG/PNG drawn with networkx and matplotlib."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from forkpath.flows._schema import END, FlowSpec


def _label(spec: FlowSpec, name: str) -> str:
    if name == END:
        return "end"
    node = spec.nodes[name]
    what = node.strategy or node.verifier or node.model or node.join or node.flow or ""
    bound = f" ≤{node.max_visits}" if node.max_visits else ""
    return f"{name}: {node.kind} {what}".rstrip() + bound


def mermaid(spec: FlowSpec, graph: nx.DiGraph) -> str:
    """A Mermaid ``flowchart TD`` of the flow; conditions label the edges."""

    def ident(name: str) -> str:
        return "__end__" if name == END else name  # `end` is a Mermaid keyword

    lines = ["flowchart TD", "    __start__([start])"]
    for name in graph.nodes:
        shape = ("([", "])") if name == END else ("[", "]")
        lines.append(f'    {ident(name)}{shape[0]}"{_label(spec, name)}"{shape[1]}')
    lines.append(f"    __start__ --> {spec.first}")
    for source, target, data in graph.edges(data=True):
        when = (data.get("when") or "").replace('"', "'")
        arrow = f'-- "{when}" -->' if when else "-->"
        lines.append(f"    {ident(source)} {arrow} {ident(target)}")
    return "\n".join(lines) + "\n"


def draw(spec: FlowSpec, graph: nx.DiGraph, path: Path) -> Path:
    """Draw the flow to ``path`` (``.svg`` or ``.png``), nodes in layers from the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = nx.single_source_shortest_path_length(graph, spec.first)
    for name in graph.nodes:
        graph.nodes[name]["layer"] = depth.get(name, max(depth.values(), default=0) + 1)
    positions = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=-1)
    fig, ax = plt.subplots(
        figsize=(
            3 + 2.5 * max(1, graph.number_of_nodes() // 3),
            2 + 1.6 * (max(depth.values(), default=0) + 2),
        )
    )
    colors = ["#d9f2d9" if n == END else "#dbe8fb" for n in graph.nodes]
    nx.draw_networkx_nodes(graph, positions, node_color=colors, node_size=2600, edgecolors="#4a6fa5", ax=ax)
    nx.draw_networkx_labels(
        graph,
        positions,
        labels={n: _label(spec, n).replace(": ", "\n") for n in graph.nodes},
        font_size=7,
        ax=ax,
    )
    nx.draw_networkx_edges(
        graph, positions, arrows=True, arrowsize=14, node_size=2600, connectionstyle="arc3,rad=0.12", ax=ax
    )
    edge_labels = {(s, t): d["when"] for s, t, d in graph.edges(data=True) if d.get("when")}
    nx.draw_networkx_edge_labels(graph, positions, edge_labels=edge_labels, font_size=7, ax=ax)
    ax.set_title(spec.name)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
