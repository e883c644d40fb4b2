"""Concurrent requests to a local model reach its batched engine together: with the server's
default limits, two requests to SmolLM2 are decoded in the same engine steps (nothing in the
server or the model layer serialises them)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from forkpath.server import ServerConfig
from tests.server.conftest import serve

pytestmark = pytest.mark.slow

SMOLLM2 = "local/smollm2-135m"


def _body(prompt: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


async def test_two_concurrent_requests_share_the_engines_decode_steps() -> None:
    assert ServerConfig().max_running >= 2
    context, state = serve()  # the defaults: no --max-running given
    with context as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=900) as first,
            httpx.AsyncClient(base_url=url, timeout=900) as second,
        ):
            warm = await first.post("/v1/chat/completions", json=_body("Hi.", 1))  # loads the model
            assert warm.status_code == 200, warm.text
            scheduler = state.pool.loaded[SMOLLM2]._engine.scheduler
            steps, batched = scheduler.steps, scheduler.batched_decode_steps
            replies = await asyncio.gather(
                first.post("/v1/chat/completions", json=_body("Count from 1 to 100.", 16)),
                second.post("/v1/chat/completions", json=_body("List the letters from A to Z.", 16)),
            )
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    tokens = [r.json()["usage"]["completion_tokens"] for r in replies]
    assert min(tokens) >= 8, tokens  # both decoded for a while
    steps, batched = scheduler.steps - steps, scheduler.batched_decode_steps - batched
    # Side by side for most of the shorter answer (one at a time would give none) ...
    assert batched >= min(tokens) // 2, (batched, tokens)
    # ... so fewer engine steps than tokens generated (one at a time: at least one step each).
    assert steps < sum(tokens), (steps, tokens)
