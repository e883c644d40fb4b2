"""The one voting rule: every strategy and flow node that votes counts ballots here.

A :class:`Ballot` is one sample's answer (its extracted final answer, a program's behaviour,
...) with what the sample carries: its vote weight, its mean token logprob where the backend
gave logprobs, and whether it finished on its own (``complete``: not cut at ``max_tokens``).

The rule (:func:`tally`):

1. **Abstention.** A ballot whose answer is None (or empty) abstains: it joins no group and
   never wins. A vote in which every ballot abstains has no winner, and the strategy returns no
   answer.
2. **Groups.** The other ballots are grouped by answer (``same``: equal text by default; math
   answers by equivalence) and a group's weight is the sum of its ballots' weights.
3. **Most weight wins.** Ties between groups of equal weight go to the group whose members are
   more likely under the model, by the mean over its members of their mean token logprob
   (length-normalised: a sum of token logprobs would favour short answers), when every tied
   member has one; otherwise, or when that ties too, to the group holding the earliest complete
   sample, then the earliest sample.
4. **The representative.** The sample returned for the winning group is its most likely member
   (mean token logprob), else its earliest complete member, else its earliest member.

Self-consistency, filter-and-cluster and the flow ``join: vote`` node all use this, so a tie
is broken the same way wherever it happens.

Example:
    >>> vote = tally([Ballot("12"), Ballot(None), Ballot("13"), Ballot("12")])
    >>> vote.winner, vote.groups[0].members, vote.abstained
    (0, [0, 3], 1)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from forkpath._types import Task


@dataclass(frozen=True)
class Ballot:
    """One sample's vote."""

    answer: str | None
    """What it votes for; None (or ``""``): it abstains."""
    weight: float = 1.0
    """Its vote's weight (1 for a majority vote)."""
    mean_logprob: float | None = None
    """Its mean token logprob, when the backend returned logprobs."""
    complete: bool = True
    """Whether the sample ended on its own rather than at ``max_tokens``."""


@dataclass
class Group:
    """The ballots (indexes into the tally's list) that agree on one answer."""

    answer: str
    """The first member's answer, as it was written."""
    members: list[int]
    weight: float


@dataclass
class Vote:
    """The outcome of :func:`tally`."""

    groups: list[Group] = field(default_factory=list)
    """Groups, winner first, in the order the rule ranks them."""
    winner: int | None = None
    """The index of the ballot that represents the winning group (None: everyone abstained)."""
    abstained: int = 0
    """How many ballots abstained."""
    tie: bool = False
    """Whether the winning group's weight equalled the runner-up's (a tie-break decided it)."""

    @property
    def answer(self) -> str | None:
        return self.groups[0].answer if self.groups else None

    def weights(self) -> dict[str, float]:
        """Answer -> total weight, winner first (the shape strategies report as ``votes``)."""
        return {g.answer: round(g.weight, 6) for g in self.groups}


def _same_text(a: str, b: str) -> bool:
    return a == b


def _likelihood(ballots: Sequence[Ballot], members: list[int]) -> float | None:
    values = [ballots[m].mean_logprob for m in members]
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def _first_complete(ballots: Sequence[Ballot], members: list[int]) -> int:
    return min((m for m in members if ballots[m].complete), default=len(ballots) + min(members))


def representative(ballots: Sequence[Ballot], members: list[int]) -> int:
    """The member returned for a group: most likely, else earliest complete, else earliest."""
    if all(ballots[m].mean_logprob is not None for m in members):
        return max(members, key=lambda m: (ballots[m].mean_logprob or 0.0, -m))
    return min(members, key=lambda m: (not ballots[m].complete, m))


def tally(ballots: Sequence[Ballot], same: Callable[[str, str], bool] = _same_text) -> Vote:
    """Count ``ballots`` by the rule in the module docstring.

    Args:
        ballots: one per sample, in sample order (the order breaks the last ties).
        same: whether two answers are the same vote (called with a group's first answer and
            the new one); exact text by default.
    """
    groups: list[Group] = []
    abstained = 0
    for i, ballot in enumerate(ballots):
        if not ballot.answer:
            abstained += 1
            continue
        for group in groups:
            if same(group.answer, ballot.answer):
                group.members.append(i)
                group.weight += ballot.weight
                break
        else:
            groups.append(Group(answer=ballot.answer, members=[i], weight=ballot.weight))
    if not groups:
        return Vote(abstained=abstained)
    likelihood = {id(g): _likelihood(ballots, g.members) for g in groups}
    by_logprob = {  # a weight whose tied groups all know their likelihood is ranked by it
        g.weight: all(likelihood[id(h)] is not None for h in groups if h.weight == g.weight) for g in groups
    }

    def rank(group: Group) -> tuple[float, float, int, int]:
        return (
            -group.weight,
            -(likelihood[id(group)] or 0.0) if by_logprob[group.weight] else 0.0,
            _first_complete(ballots, group.members),
            min(group.members),
        )

    ordered = sorted(groups, key=rank)
    return Vote(
        groups=ordered,
        winner=representative(ballots, ordered[0].members),
        abstained=abstained,
        tie=len(ordered) > 1 and ordered[1].weight == ordered[0].weight,
    )


# -- answers: how a sample's vote is read and compared ---------------------------------------------
Extract = Literal["auto", "number", "math", "last_line", "full"]
Mode = Literal["number", "math", "text"]


def answer_mode(how: Extract, task: Task) -> Mode:
    """How answers are compared for ``how``: ``auto`` follows the task's kind of answer."""
    from forkpath.verifiers import answer_format

    if how == "auto":
        return answer_format(task) if task.kind == "math" else "text"
    return "number" if how == "number" else "math" if how == "math" else "text"


def extract_answer(text: str, how: Extract, task: Task) -> str | None:
    """The final answer a sample votes for (None: it states none and abstains)."""
    from forkpath.verifiers import answer_format
    from forkpath.verifiers import extract_answer as read_answer

    if how == "auto":
        how = answer_format(task) if task.kind == "math" else "last_line"
    if how in ("number", "math"):
        return read_answer(text, "number" if how == "number" else "math")
    if how == "last_line":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else None
    return text.strip() or None


def _normal(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.strip().rstrip(".")).lower()


def same_answer(a: str, b: str, *, mode: Mode) -> bool:
    """Whether two extracted answers are the same vote."""
    if mode == "number":
        from forkpath.verifiers import numbers_equal

        return numbers_equal(a, b)
    if _normal(a) == _normal(b):
        return True
    if mode == "text":
        return False
    from forkpath.verifiers import math_equal

    return math_equal(a, b)


def vote_on(task: Task, candidates: Sequence[dict[str, Any]]) -> tuple[Vote, int | None]:
    """The vote over candidates given as JSON (a flow's ``candidates``): each votes for its
    extracted ``answer``, else for the answer read from its ``text`` by the task's kind (math:
    a number or free-form; unreadable: it abstains), else for its whole text. Returns the vote
    and the index of the winning candidate (None: everyone abstained)."""
    mode = answer_mode("auto", task)
    ballots = []
    for c in candidates:
        answer = c.get("answer")
        if not answer:
            answer = extract_answer(c["text"], "auto", task) if task.kind == "math" else c["text"].strip()
        ballots.append(Ballot(answer, mean_logprob=c.get("mean_logprob")))
    counted = tally(ballots, lambda a, b: same_answer(a, b, mode=mode))
    return counted, counted.winner
