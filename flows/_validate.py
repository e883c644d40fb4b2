"""Checks a flow before anything runs; each problem is one :class:`ConfigError` at ``file:line``.

In order: models (the string and every ``options`` field, against the backend's options model),
names (strategies, verifiers, models, nodes, edges), parameters against the factories'
signatures (types and ranges; the strategy is then made, so its own cross-parameter checks
run too), templates and edge conditions (syntax and unknown variables), the graph (networkx:
unreachable nodes, nodes that cannot reach the end, loops without a bound), the model roles and
capabilities each strategy needs, and sub-flows (loaded and validated with the parent, cycles
and depth refused).

What validation cannot see (the values a run produces) is made safe where it is used: a
condition that cannot be evaluated (``score >= 0.5`` while ``score`` is None) is false, and a
template that fails while rendering stops the run with one ``FlowError`` naming it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import networkx as nx
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from forkpath._errors import ConfigError
from forkpath._types import Task
from forkpath.flows._lines import LineMap, Path_, first_problem, label, one_line, plain
from forkpath.flows._schema import END, FlowSpec, NodeSpec, spec_from_data
from forkpath.flows._yaml import load_yaml_file
from forkpath.models import ModelCapabilities, backend_for, check_capabilities, check_model

STATE_NAMES = {"answer", "passed", "score", "visits", "budget", "steps", "task", "prompt"}
"""Names a template or condition may use besides the task's fields."""
TASK_FIELDS = set(Task.model_fields)
MAX_SUBFLOW_DEPTH = 8
"""How deep sub-flows may include sub-flows."""
_env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


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


def validate(
    spec: FlowSpec, lines: LineMap, base_dir: Path | None = None, *, chain: tuple[Path, ...] = ()
) -> None:
    """Raise the first problem found, as a :class:`ConfigError` pointing at its line.

    ``chain`` is the sub-flow files being validated around this one (outermost first), to
    refuse a flow that includes itself.
    """
    _check_models(spec, lines)
    _check_names(spec, lines)
    if spec.verifier is not None:
        _check_verifier(
            spec.verifier.name, spec.verifier.params, lines, ("verifier", "name"), ("verifier", "params")
        )
    for name, node in spec.nodes.items():
        _check_node_params(name, node, lines)
        _check_template(name, node, lines)
    for i, edge in enumerate(spec.edges):
        if edge.when is not None:
            _check_expression(edge.when, lines, ("edges", i, "when"))
    _check_graph(spec, lines)
    for name, node in spec.nodes.items():
        if node.strategy:
            _check_strategy(spec, name, node, lines)
    _check_subflows(spec, lines, base_dir or Path.cwd(), chain)


# -- models and names ----------------------------------------------------------------------------
def _check_models(spec: FlowSpec, lines: LineMap) -> None:
    for role, model in spec.models.items():
        try:
            check_model(model.model, model.options)
        except Exception as e:
            message = str(e) if isinstance(e, ConfigError) else f"cannot check model: {type(e).__name__}: {e}"
            raise lines.error(
                f"models.{role}: {message}", ("models", role, *_option_path(model.model, model.options))
            ) from None


def _option_path(model: str, options: dict[str, Any]) -> Path_:
    """Where in a model's spec its problem is: the first bad option, else the model string."""
    try:
        backend_for(model).options.model_validate(options)
    except ValidationError as e:
        return ("options", *e.errors()[0]["loc"])
    except Exception:
        pass
    return ("model",)


def _check_names(spec: FlowSpec, lines: LineMap) -> None:
    if spec.start is not None and spec.start not in spec.nodes:
        raise lines.error(f"start: no node named {spec.start!r} ({_known(spec.nodes)})", ("start",))
    for name, node in spec.nodes.items():
        where = ("nodes", name)
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


# -- parameters ----------------------------------------------------------------------------------
def _check_params(registry: Any, name: str, params: dict[str, Any], lines: LineMap, where: Path_) -> None:
    """``params`` against the factory's signature; an error points at the parameter's own line."""
    try:
        model = registry.params_model(name)
        model.model_validate(params)
    except ValidationError as e:
        first = first_problem(e.errors(), lines, where)
        loc = tuple(first["loc"])
        field = label(loc) or "params"
        if first["type"] == "extra_forbidden":
            known = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            message = (
                f"unknown parameter; did you mean {close[0]}?"
                if close
                else f"unknown parameter (parameters of {name}: {', '.join(known) or 'none'})"
            )
        elif first["type"] == "missing":
            message = "required parameter is missing"
        else:
            message = plain(first["msg"])
        raise lines.error(f"{registry.kind} {name!r}: {field}: {message}", (*where, *loc)) from None
    except ConfigError as e:
        raise lines.error(str(e), where) from None


def _check_verifier(
    name: str, params: dict[str, Any], lines: LineMap, name_at: Path_, params_at: Path_
) -> None:
    import forkpath.strategies  # noqa: F401 - registers the verifiers strategies provide (public_tests)
    from forkpath.verifiers import verifiers

    try:
        verifiers.get(name)
    except ConfigError as e:
        raise lines.error(str(e), name_at) from None
    _check_params(verifiers, name, params, lines, params_at)


def _check_node_params(name: str, node: NodeSpec, lines: LineMap) -> None:
    where: Path_ = ("nodes", name)
    if node.strategy:
        from forkpath.strategies import strategies

        try:
            strategies.get(node.strategy)
        except ConfigError as e:
            raise lines.error(str(e), (*where, "strategy")) from None
        _check_params(strategies, node.strategy, node.params, lines, (*where, "params"))
    elif node.verifier:
        _check_verifier(node.verifier, node.params, lines, (*where, "verifier"), (*where, "params"))
    elif node.model:
        from forkpath.flows._nodes import ModelCallParams

        try:
            ModelCallParams.model_validate(node.params)
        except ValidationError as e:
            first = e.errors()[0]
            loc = tuple(first["loc"])
            message = (
                f"unknown parameter of a model call (parameters: {', '.join(ModelCallParams.model_fields)})"
                if first["type"] == "extra_forbidden"
                else first["msg"]
            )
            raise lines.error(
                f"{label((*where, 'params', *loc))}: {message}", (*where, "params", *loc)
            ) from None


# -- templates and conditions --------------------------------------------------------------------
def _parse(source: str) -> jinja2.nodes.Template:
    try:
        return _env.parse(source)
    except (RecursionError, MemoryError):
        raise jinja2.TemplateSyntaxError("nested too deeply", 1) from None


def _check_template(name: str, node: NodeSpec, lines: LineMap) -> None:
    if node.prompt is None:
        return
    where = ("nodes", name, "prompt")
    label = f"nodes.{name}.prompt"
    try:
        parsed = _parse(node.prompt)
        unknown = jinja2.meta.find_undeclared_variables(parsed) - STATE_NAMES - TASK_FIELDS
    except jinja2.TemplateSyntaxError as e:
        raise lines.error(f"{label}: template error: {e.message}", where) from None
    except (RecursionError, MemoryError):
        raise lines.error(f"{label}: template error: nested too deeply", where) from None
    if unknown:
        raise lines.error(
            f"{label}: unknown field {', '.join(sorted(unknown))} in template "
            f"(task fields: {', '.join(sorted(TASK_FIELDS))}; state: {', '.join(sorted(STATE_NAMES))})",
            where,
        )


def _check_expression(expression: str, lines: LineMap, where: Path_) -> None:
    label = f"edges[{where[1]}].when"
    shown = one_line(repr(expression), 120)
    try:
        parsed = _parse("{{ " + expression + " }}")
        _env.compile_expression(expression)
        unknown = jinja2.meta.find_undeclared_variables(parsed) - STATE_NAMES - TASK_FIELDS
    except jinja2.TemplateSyntaxError as e:
        raise lines.error(f"{label}: cannot parse condition {shown}: {e.message}", where) from None
    except (RecursionError, MemoryError, SyntaxError, ValueError) as e:
        raise lines.error(f"{label}: cannot parse condition {shown}: {type(e).__name__}", where) from None
    if unknown:
        raise lines.error(
            f"{label}: unknown name {', '.join(sorted(unknown))} in condition (use: {', '.join(sorted(STATE_NAMES))})",
            where,
        )


# -- the graph -----------------------------------------------------------------------------------
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


# -- strategies: made once, their roles and capabilities -----------------------------------------
def _check_strategy(spec: FlowSpec, name: str, node: NodeSpec, lines: LineMap) -> None:
    from forkpath.strategies import strategies

    assert node.strategy is not None
    where: Path_ = ("nodes", name)
    try:
        strategy = strategies.create(node.strategy, **node.params)
    except ConfigError as e:
        raise lines.error(f"nodes.{name}.params: {e}", (*where, "params")) from None
    except Exception as e:  # a factory's own check that is not (yet) a ConfigError
        raise lines.error(
            f"nodes.{name}.params: strategy {node.strategy} cannot be made: {type(e).__name__}: {e}",
            (*where, "params"),
        ) from None
    if strategy.needs:
        for role in node.models:
            if role not in strategy.needs:
                raise lines.error(
                    f"nodes.{name}.models.{role}: strategy {node.strategy} has no model role {role!r} "
                    f"(its roles: {', '.join(strategy.needs)})",
                    (*where, "models", role),
                )
    for role, needs in strategy.needs.items():
        target = node.models.get(role, role)
        if target not in spec.models:
            raise lines.error(
                f"nodes.{name}: strategy {node.strategy} needs a model for role {role!r}; "
                f"add models: {{{role}: <one of {', '.join(spec.models)}>}} to the node",
                where,
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
            raise lines.error(str(e), where) from None
    if strategy.needs_verifier and spec.verifier is None:
        raise lines.error(
            f"nodes.{name}: strategy {node.strategy} needs a verifier; set `verifier:` on the flow", where
        )


# -- sub-flows -----------------------------------------------------------------------------------
def _check_subflows(spec: FlowSpec, lines: LineMap, base_dir: Path, chain: tuple[Path, ...]) -> None:
    for name, node in spec.nodes.items():
        if not node.flow:
            continue
        where: Path_ = ("nodes", name, "flow")
        label = f"nodes.{name}.flow"
        path = base_dir / node.flow
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise lines.error(f"{label}: cannot resolve sub-flow path {node.flow!r}: {e}", where) from None
        if resolved in chain:
            cycle = [*chain[chain.index(resolved) :], resolved]
            raise lines.error(
                f"{label}: sub-flows include each other in a cycle: {' -> '.join(map(_shown, cycle))}", where
            )
        if len(chain) >= MAX_SUBFLOW_DEPTH:
            raise lines.error(f"{label}: sub-flows nest deeper than {MAX_SUBFLOW_DEPTH} levels", where)
        try:
            data, sub_lines = load_yaml_file(path, _shown(path))
            sub_spec = spec_from_data(data, sub_lines)
            validate(sub_spec, sub_lines, resolved.parent, chain=(*chain, resolved))
        except ConfigError as e:
            raise lines.error(f"{label}: in sub-flow {e}", where) from None


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)
