"""Meta-generation strategies: factories registered by name, each returning a :class:`Strategy`.

- parallel: ``best_of_n``, ``self_consistency``, ``filter_and_cluster`` (the voting rule every
  vote follows: :func:`tally` over :class:`Ballot`);
- program-aided: ``program_of_thought``;
- chained and self-evaluating: ``cothink``, ``self_refine``, ``alphacodium``, ``sed``, ``adadec``,
  ``thought_budget``;
- search: ``beam_search``, ``mcts``, ``token_tree_search``, with their shared parameter groups
  (:class:`StepParams` / :class:`TokenStepParams`, :class:`ValueParams` /
  :class:`TokenValueParams`, :class:`SharingParams`);
- routing: ``token_routing``, ``segment_offload``, ``cascade``, ``speculative_decoding``;
- ladders: ``escalate`` (stages gated by public tests, agreement, mean logprob or score;
  thresholds fitted by ``forkpath sweep --calibrate``).

Example:
    >>> from forkpath.strategies import Context, strategies
    >>> best = strategies.create("best_of_n", n=4)
    >>> result = await best(task, Context(models={"default": model}, verifier=verifier))
"""

from forkpath.strategies._adadec import adadec
from forkpath.strategies._alphacodium import alphacodium
from forkpath.strategies._base import Candidate, Context, Strategy, StrategyResult, strategies
from forkpath.strategies._beam_search import beam_search
from forkpath.strategies._best_of_n import best_of_n
from forkpath.strategies._cascade import cascade
from forkpath.strategies._cothink import cothink
from forkpath.strategies._escalate import (
    Fit,
    Stage,
    StageOutcome,
    Thresholds,
    escalate,
    fit_thresholds,
    load_thresholds,
    run_stage,
    save_thresholds,
    simulate,
    thresholds_file,
)
from forkpath.strategies._filter_cluster import filter_and_cluster
from forkpath.strategies._helpers import public_tests
from forkpath.strategies._mcts import mcts
from forkpath.strategies._program_of_thought import program_of_thought
from forkpath.strategies._search_params import (
    SharingParams,
    StepParams,
    TokenStepParams,
    TokenValueParams,
    ValueParams,
)
from forkpath.strategies._sed import sed
from forkpath.strategies._segment_offload import segment_offload
from forkpath.strategies._self_consistency import self_consistency
from forkpath.strategies._self_refine import self_refine
from forkpath.strategies._speculative import speculative_decoding
from forkpath.strategies._thought_budget import thought_budget
from forkpath.strategies._token_routing import token_routing
from forkpath.strategies._token_tree_search import token_tree_search
from forkpath.strategies._vote import Ballot, Vote, tally, vote_on
from forkpath.verifiers import verifiers as _verifiers

_verifiers.register("public_tests")(public_tests)

__all__ = [
    "Ballot",
    "Candidate",
    "Context",
    "Fit",
    "SharingParams",
    "Stage",
    "StageOutcome",
    "StepParams",
    "Strategy",
    "StrategyResult",
    "Thresholds",
    "TokenStepParams",
    "TokenValueParams",
    "ValueParams",
    "Vote",
    "adadec",
    "alphacodium",
    "beam_search",
    "best_of_n",
    "cascade",
    "cothink",
    "escalate",
    "filter_and_cluster",
    "fit_thresholds",
    "load_thresholds",
    "mcts",
    "program_of_thought",
    "public_tests",
    "run_stage",
    "save_thresholds",
    "sed",
    "segment_offload",
    "self_consistency",
    "self_refine",
    "simulate",
    "speculative_decoding",
    "strategies",
    "tally",
    "thought_budget",
    "thresholds_file",
    "token_routing",
    "token_tree_search",
    "vote_on",
]
