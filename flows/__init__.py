"""Flows: graphs of strategies, verifiers and model calls, declared in YAML or built in Python.

Example:
    >>> from forkpath.flows import Flow
    >>> flow = Flow.from_yaml("examples/best_of_n.yaml")     # validated: errors say file:line
    >>> result = flow.run_sync(task)
    >>> print(flow.mermaid())
"""

from forkpath.flows._flow import Flow, FlowResult
from forkpath.flows._schema import EdgeSpec, FlowSpec, ModelSpec, NodeSpec, TraceSpec, VerifierSpec

__all__ = [
    "EdgeSpec",
    "Flow",
    "FlowResult",
    "FlowSpec",
    "ModelSpec",
    "NodeSpec",
    "TraceSpec",
    "VerifierSpec",
]
