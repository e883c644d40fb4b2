"""Flows: graphs of strategies, verifiers and model calls, declared in YAML or built in Python.

Example:
    >>> from forkpath.flows import Flow
    >>> flow = Flow.from_yaml("examples/best_of_n.yaml")     # validated: errors say file:line
    >>> result = flow.run_sync(task)
    >>> print(flow.mermaid())
"""

from forkpath.flows._flow import Flow, FlowResult
from forkpath.flows._lines import LineMap, render_validation_error
from forkpath.flows._schema import EdgeSpec, FlowSpec, ModelSpec, NodeSpec, TraceSpec, VerifierSpec
from forkpath.flows._yaml import load_yaml_file

__all__ = [
    "EdgeSpec",
    "Flow",
    "FlowResult",
    "FlowSpec",
    "LineMap",
    "ModelSpec",
    "NodeSpec",
    "TraceSpec",
    "VerifierSpec",
    "load_yaml_file",
    "render_validation_error",
]
