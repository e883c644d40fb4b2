"""Meta-generation strategies: factories registered by name, each returning a :class:`Strategy`.

Example:
    >>> from forkpath.strategies import Context, strategies
    >>> best = strategies.create("best_of_n", n=4)
    >>> result = await best(task, Context(models={"default": model}, verifier=verifier))
"""

from forkpath.strategies._base import Candidate, Context, Strategy, StrategyResult, strategies
from forkpath.strategies._best_of_n import best_of_n
from forkpath.strategies._budget import Budget, BudgetLimits
from forkpath.strategies._prompts import task_messages

__all__ = [
    "Budget",
    "BudgetLimits",
    "Candidate",
    "Context",
    "Strategy",
    "StrategyResult",
    "best_of_n",
    "strategies",
    "task_messages",
]
