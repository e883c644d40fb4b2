"""What the GSM8K benches share: the prompt of issue 19 and the documented problem subsets.

The scripts run as ``python bench/x.py``, which puts this folder on ``sys.path``: they import it
as ``from _gsm8k import PROMPT, PEER_SUBSET``.
"""

from __future__ import annotations

PROMPT = (
    "{prompt}\n\nSolve the problem step by step. End your reply with "
    '"The answer is N." where N is the final number.'
)
"""The user message (a ``str.format`` template over the task's fields; ``{prompt}`` is the question)."""

PEER_SUBSET = [1 + 33 * i for i in range(40)]
"""gsm8k/1, 34, 67, ..., 1288: the 40 problems of ``bench/peers.py`` (its first 12 are the issue's)."""

SAMPLES_SUBSET = [5 + 33 * i for i in range(40)]
"""gsm8k/5, 38, ..., 1292: the problems whose sampled solutions are the extraction test data
(disjoint from every benchmark subset)."""
