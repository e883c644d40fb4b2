"""Checks a flow before anything runs; each problem is one :class:`ConfigError` at ``file:line``.

In order: names (strategies, verifiers, models, nodes, sub-flow files), parameters against the
factories' signatures, templates and edge conditions (syntax and unknown variables), the graph
(networkx: unreachable nodes, nodes that cannot reach the end, loops without a bound), and the
capabilities each strategy needs of the models it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import networkx as nx

from forkpath._errors import ConfigError, ForkpathError
from forkpath._types import Task
from forkpath.flows._schema import END, FlowSpec, NodeSpec
from forkpath.flows._yaml import LineMap
from forkpath.models import ModelCapabilities, check_capabilities, check_model

STATE_NAMES = {"answer", "passed", "score", "visits", "budget", "steps", "task", "prompt"}
"""Names a template or condition may use besides the task's fields."""
TASK_FIELDS = set(Task.model_fields)
_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def flow_graph(spec: FlowSpec) -> nx.DiGraph:
    """The flow as a directed graph: its nodes plus ``end``, one edge per transition."""
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(spec.nodes)
    graph.add_node(END)
    has_out = {edge.source for edge in spec.edges}
    for edge in spec.edges:
        for target in edge.targets:
            graph.add_edge(edge.source, target, when=edge.when)
    for name in spec.nodes:
        if name not in has_out:
            graph.add_edge(name, END, when=None)  # a node with no way out finishes the flow
    return graph


def validate(spec: FlowSpec, lines: LineMap, base_dir: Path | None = None) -> None:
    """Raise the first problem found, as a :class:`ConfigError` pointing at its line."""
    _check_names(spec, lines, base_dir)
    for name, node in spec.nodes.items():
        _check_templates(node, lines, ("nodes", name))
    for i, edge in enumerate(spec.edges):
        if edge.when is not None:
            _check_expression(edge.when, lines, ("edges", i, "when"))
    _check_graph(spec, lines)
    for name, node in spec.nodes.items():
        if node.strategy:
            _check_strategy(spec, name, node, lines)


def _check_names(spec: FlowSpec, lines: LineMap, base_dir: Path | None) -> None:
    from forkpath.strategies import strategies
    from forkpath.verifiers import verifiers

    if spec.start is not None and spec.start not in spec.nodes:
        raise lines.error(f"start: no node named {spec.start!r}", ("start",))
    if END in spec.nodes:
        raise lines.error(f"nodes: {END!r} is reserved for the end of the flow", ("nodes", END))
    for role, model in spec.models.items():
        try:
            check_model(model.model, model.options)
        except ForkpathError as e:
            raise lines.error(f"models.{role}: {e}", ("models", role)) from None
    if spec.verifier is not None:
        _check_params(verifiers, spec.verifier.name, spec.verifier.params, lines, ("verifier",), "verifier")
    for name, node in spec.nodes.items():
        where = ("nodes", name)
        if node.strategy:
            _check_params(strategies, node.strategy, node.params, lines, (*where, "strategy"), "strategy")
        if node.verifier:
            _check_params(verifiers, node.verifier, node.params, lines, (*where, "verifier"), "verifier")
        if node.model and node.model not in spec.models:
            raise lines.error(
                f"nodes.{name}.model: no model named {node.model!r} ({_known(spec.models)})",
                (*where, "model"),
            )
        for role, target in node.models.items():
            if target not in spec.models:
                raise lines.error(
                    f"nodes.{name}.models.{role}: no model named {target!r} ({_known(spec.models)})",
                    (*where, "models", role),
                )
        if node.agent:
            _check_agent(spec, name, node, lines)
        if node.flow:
            path = (base_dir or Path.cwd()) / node.flow
            if not path.is_file():
                raise lines.error(f"nodes.{name}.flow: sub-flow file not found: {path}", (*where, "flow"))
    for i, edge in enumerate(spec.edges):
        if edge.source not in spec.nodes:
            raise lines.error(
                f"edges[{i}].from: no node named {edge.source!r} ({_known(spec.nodes)})", ("edges", i, "from")
            )
        for target in edge.targets:
            if target != END and target not in spec.nodes:
                raise lines.error(
                    f"edges[{i}].to: no node named {target!r} ({_known(spec.nodes)}, or {END})",
                    ("edges", i, "to"),
                )


def _check_agent(spec: FlowSpec, name: str, node: NodeSpec, lines: LineMap) -> None:
    from forkpath.tools import check_tool_refs

    assert node.agent is not None
    where = ("nodes", name, "agent")
    target = node.agent.model
    if target not in spec.models:
        raise lines.error(
            f"nodes.{name}.agent.model: no model named {target!r} ({_known(spec.models)})", (*where, "model")
        )
    model = spec.models[target]
    try:
        check_capabilities(
            check_model(model.model, model.options),
            ModelCapabilities(tool_calls=True),
            model_id=model.model,
            by=f"the agent of node {name}",
        )
        check_tool_refs(node.agent.tools)
    except ConfigError as e:
        raise lines.error(f"nodes.{name}.agent: {e}", where) from None


def _known(names: dict[str, Any]) -> str:
    return "known: " + (", ".join(names) or "none")


def _check_params(
    registry: Any, name: str, params: dict[str, Any], lines: LineMap, where: tuple[Any, ...], kind: str
) -> None:
    try:
        registry.get(name)
    except ConfigError as e:
        raise lines.error(str(e), where) from None
    try:
        registry.validate(name, params)
    except ConfigError as e:
        raise lines.error(str(e), (*where[:-1], "params")) from None


def _check_templates(node: NodeSpec, lines: LineMap, where: tuple[Any, ...]) -> None:
    if node.prompt is None:
        return
    try:
        parsed = _env.parse(node.prompt)
    except jinja2.TemplateSyntaxError as e:
        raise lines.error(
            f"{'.'.join(map(str, where))}.prompt: template error: {e.message}", (*where, "prompt")
        ) from None
    unknown = jinja2.meta.find_undeclared_variables(parsed) - STATE_NAMES - TASK_FIELDS
    if unknown:
        raise lines.error(
            f"{'.'.join(map(str, where))}.prompt: unknown field {', '.join(sorted(unknown))} in template "
            f"(task fields: {', '.join(sorted(TASK_FIELDS))}; state: {', '.join(sorted(STATE_NAMES))})",
            (*where, "prompt"),
        )


def _check_expression(expression: str, lines: LineMap, where: tuple[Any, ...]) -> None:
    label = f"edges[{where[1]}].when"
    try:
        parsed = _env.parse("{{ " + expression + " }}")
        _env.compile_expression(expression)
    except jinja2.TemplateSyntaxError as e:
        raise lines.error(f"{label}: cannot parse condition {expression!r}: {e.message}", where) from None
    unknown = jinja2.meta.find_undeclared_variables(parsed) - STATE_NAMES - TASK_FIELDS
    if unknown:
        raise lines.error(
            f"{label}: unknown name {', '.join(sorted(unknown))} in condition (use: {', '.join(sorted(STATE_NAMES))})",
            where,
        )


def _check_graph(spec: FlowSpec, lines: LineMap) -> None:
    graph = flow_graph(spec)
    reachable = {spec.first} | nx.descendants(graph, spec.first)
    for name in spec.nodes:
        if name not in reachable:
            raise lines.error(
                f"nodes.{name}: unreachable from the start node {spec.first!r}", ("nodes", name)
            )
    finishing = nx.ancestors(graph, END)
    for name in spec.nodes:
        if name not in finishing:
            raise lines.error(
                f"nodes.{name}: can never reach the end (every path from it loops)", ("nodes", name)
            )
    for component in nx.strongly_connected_components(graph):
        looped = len(component) > 1 or any(graph.has_edge(n, n) for n in component)
        if looped and not any(spec.nodes[n].max_visits for n in component if n in spec.nodes):
            cycle = sorted(component)
            raise lines.error(
                f"nodes.{cycle[0]}: loop {' -> '.join(cycle)} has no bound; set max_visits on one of its nodes",
                ("nodes", cycle[0]),
            )
    for name, node in spec.nodes.items():
        if node.join and graph.in_degree(name) < 2:
            raise lines.error(
                f"nodes.{name}.join: a join node needs at least two incoming branches",
                ("nodes", name, "join"),
            )


def _check_strategy(spec: FlowSpec, name: str, node: NodeSpec, lines: LineMap) -> None:
    from forkpath.strategies import strategies

    assert node.strategy is not None
    strategy = strategies.create(node.strategy, **node.params)
    for role, needs in strategy.needs.items():
        target = node.models.get(role, role)
        if target not in spec.models:
            raise lines.error(
                f"nodes.{name}: strategy {node.strategy} needs a model for role {role!r}; "
                f"add models: {{{role}: <one of {', '.join(spec.models)}>}} to the node",
                ("nodes", name),
            )
        model = spec.models[target]
        try:
            check_capabilities(
                check_model(model.model, model.options),
                needs,
                model_id=model.model,
                by=f"{node.strategy} (node {name})",
            )
        except ConfigError as e:
            raise lines.error(str(e), ("nodes", name)) from None
    if strategy.needs_verifier and spec.verifier is None:
        raise lines.error(
            f"nodes.{name}: strategy {node.strategy} needs a verifier; set `verifier:` on the flow",
            ("nodes", name),
        )
