"""its_hub's self-consistency, as its users run it: the worker ``bench/peers.py`` drives.

Runs in the peer's own venv (``.peers/its_hub``, ``its-hub[lm]==1.2.0``), never in forkpath's:
it imports nothing from forkpath. It reads one JSON problem per line on stdin and writes one
JSON answer per line on stdout. :func:`project` is plain code (its_hub is imported inside
:func:`solve`), so ``bench/peers.py`` reads forkpath's samples the peer's way too.

The user code its_hub needs, written as the issue describes its_hub's run:
- the projection votes on numbers: the first number of the last "the answer is ..." sentence,
  else the last number of the text, else the whole stripped text (its_hub's own default);
- the sampling settings go into every request body (a subclass of its OpenAI-compatible model
  adds them), so the server's defaults do not apply and both clients sample alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import warnings
from typing import Any

_STATED = re.compile(r"answer is[:\s]*([^\n]*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def project(text: str) -> str:
    """The number a response votes for (the issue's user code for its_hub)."""
    stated = _STATED.findall(text)
    if stated:
        sentence = re.split(r"(?<!\d)\.(?!\d)", stated[-1])[0]
        found = _NUMBER.search(sentence)
        if found:
            return _plain(found.group())
    numbers = _NUMBER.findall(text)
    return _plain(numbers[-1]) if numbers else text.strip()


def _plain(number: str) -> str:
    number = number.replace(",", "").rstrip(".")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


async def solve(problem: dict[str, Any]) -> dict[str, Any]:
    from its_hub.core.algorithms.self_consistency import SelfConsistency
    from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel

    class SampledLanguageModel(OpenAICompatibleLanguageModel):  # type: ignore[misc]
        """its_hub's OpenAI-compatible model, with explicit sampling settings in every request."""

        def __init__(self, sampling: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.sampling = sampling

        def _prepare_request_data(self, *args: Any, **kwargs: Any) -> dict:
            data: dict = super()._prepare_request_data(*args, **kwargs)
            data.update(self.sampling)
            return data

    lm = SampledLanguageModel(
        sampling=problem["sampling"],
        endpoint=problem["api_base"],
        api_key="not-needed",
        model_name=problem["model"],
        max_tokens=problem["max_tokens"],
        temperature=problem["temperature"],
    )
    algorithm = SelfConsistency(consistency_space_projection_func=project)
    started = time.perf_counter()
    try:
        result = await algorithm.ainfer(
            lm, problem["prompt"], budget=problem["n"], return_response_only=False
        )
    finally:
        await lm.close()
    seconds = time.perf_counter() - started
    texts = [r.get("content") or "" for r in result.responses]
    usage = result.usage
    return {
        "id": problem["id"],
        "texts": texts,
        "votes": [project(t) for t in texts],
        "selected": result.selected_index,
        "answer": project(texts[result.selected_index]),
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "seconds": seconds,
    }


def main() -> None:
    warnings.filterwarnings("ignore")
    import its_hub.core.algorithms.self_consistency  # noqa: F401 - loaded before the first timed problem

    for line in sys.stdin:
        if line.strip():
            print(json.dumps(asyncio.run(solve(json.loads(line)))), flush=True)


if __name__ == "__main__":
    main()
