"""thought_budget: ThoughtTerminator (Pu et al. 2025, arXiv 2504.13367), a token deadline for reasoning.

1. *Deadline*: a fixed ``budget``, or one estimated from the problem's difficulty: the model
   rates it from 1 to 10 (``estimate="difficulty"``, mapped linearly onto
   ``[min_budget, max_budget]``), or says how many tokens it needs (``estimate="tokens"``,
   clamped to the same range). One short call.
2. *Interrupts*: the model reasons in chunks of ``chunk`` tokens (default ``max(64, T/4)``);
   after each chunk without a final answer, a note inside its reasoning tells it how many tokens
   it used and has left and to answer now if it can.
3. *Termination*: at the deadline, a closing note ("Time is up ...") is appended and the final
   answer is forced: up to ``answer_tokens`` more tokens after ``Final answer:``, one retry if no
   answer can be read from them. (The paper constrains this step with a grammar; the model
   layer has no grammar support, so this prompts and parses, the documented approximation.)

"Used" counts the model's own generated tokens; the injected notes are not counted.
Continuing the model's own partial reasoning needs prefix continuation (``mode="prefill"``);
over chat-only APIs the notes become user turns instead (``mode="user_turn"``), which breaks
the reasoning stream and is weaker. ``mode="auto"`` picks by the model's capabilities.
"""

from __future__ import annotations

import re
from typing import Literal

from forkpath._errors import ConfigError
from forkpath._params import Temperature, Tokens
from forkpath._prompts import PromptTemplate, task_messages
from forkpath._types import Task
from forkpath.models import GenerateRequest, GenerateResult, Message, Model, ModelCapabilities
from forkpath.strategies._base import Candidate, Context, Stopped, Strategy, StrategyResult, strategies
from forkpath.strategies._helpers import budget_reached, verify_into

DIFFICULTY = (
    "Problem:\n{prompt}\n\nHow hard is this problem, from 1 (trivial) to 10 (very hard)? "
    "Reply with the number only."
)
TOKENS = (
    "Problem:\n{prompt}\n\nHow many tokens of reasoning will you need to solve this problem? "
    "Reply with one number only."
)
INTERRUPT = "\n\n[I have used {used} tokens and have {left} tokens left. If I already know the answer, I should state it now.]\n\n"
TERMINATE = "\n\n[Time is up. I must give my final answer now.]\nFinal answer:"
TERMINATE_TURN = "Time is up. Give your final answer now, as one line starting with 'Final answer:'."
_ANSWER = re.compile(r"final answer\s*[:=]|the answer is|\\boxed\{|####", re.IGNORECASE)


def has_answer(text: str, task: Task) -> bool:
    """Whether the reasoning so far states a final answer."""
    if task.kind == "code":
        return text.count("```") >= 2
    return bool(_ANSWER.search(text))


def deadline_from(reply: str, estimate: str, min_budget: int, max_budget: int) -> int | None:
    """The token deadline a difficulty or token-count reply implies (None if it has no number)."""
    match = re.search(r"\d+(?:\.\d+)?", reply.replace(",", ""))
    if not match:
        return None
    value = float(match.group(0))
    if estimate == "difficulty":
        level = min(max(value, 1.0), 10.0)
        return round(min_budget + (max_budget - min_budget) * (level - 1.0) / 9.0)
    return int(min(max(value, min_budget), max_budget))


@strategies.register("thought_budget")
def thought_budget(
    model: str = "default",
    budget: Tokens | None = None,
    estimate: Literal["difficulty", "tokens"] = "difficulty",
    min_budget: Tokens = 128,
    max_budget: Tokens = 1024,
    chunk: Tokens | None = None,
    answer_tokens: Tokens = 48,
    mode: Literal["auto", "prefill", "user_turn"] = "auto",
    temperature: Temperature = 0.0,
    prompt: PromptTemplate | None = None,
) -> Strategy:
    """Reason under a token deadline, with interrupts, then force a final answer.

    Args:
        model: the context's model role (a reasoning model, ideally).
        budget: the token deadline T; None estimates it per problem (``estimate``).
        estimate: ``difficulty`` (a 1–10 rating mapped onto the range) or ``tokens`` (asked directly).
        min_budget: the least T an estimate gives (a floor: hard problems need room).
        max_budget: the most T an estimate gives (also used when the estimate cannot be read).
        chunk: tokens per chunk between interrupts (default ``max(64, T // 4)``).
        answer_tokens: most tokens of the forced final answer.
        mode: ``prefill`` continues the model's partial reasoning (needs prefix continuation),
            ``user_turn`` sends notes as user turns, ``auto`` picks by capability.
        temperature: sampling temperature of the reasoning.
        prompt: a template for the user message.
    """
    if budget is not None and budget < 1:
        raise ConfigError(f"thought_budget: budget must be at least 1 token, got {budget}")
    if not 1 <= min_budget <= max_budget:
        raise ConfigError(
            f"thought_budget: need 1 <= min_budget <= max_budget, got {min_budget}, {max_budget}"
        )
    needs = ModelCapabilities(prefix_continuation=mode == "prefill")

    async def run(task: Task, context: Context) -> StrategyResult:
        thinker = context.model(model)
        prefill = mode == "prefill" or (mode == "auto" and thinker.capabilities.prefix_continuation)
        info: dict[str, object] = {"mode": "prefill" if prefill else "user_turn"}
        if budget_reached(context):
            return StrategyResult(answer=None, stopped="budget", info=info)
        deadline = budget if budget is not None else await _estimate(thinker, task, info)
        step = chunk or max(64, deadline // 4)
        base = task_messages(task, prompt)
        reasoning = ""  # the assistant turn as the model sees it (prefill), notes included
        turns: list[Message] = []  # user_turn mode: the conversation after the task
        visible = ""  # the model's own words, notes excluded
        used, chunks = 0, 0
        stopped: Stopped = "done"
        finished = False
        while used < deadline:
            if budget_reached(context):
                stopped = "budget"
                break
            messages = _messages(base, prefill, reasoning, turns)
            result = await thinker.generate(
                GenerateRequest(
                    messages=messages,
                    max_tokens=min(step, deadline - used),
                    temperature=temperature,
                    sample_index=chunks,
                )
            )
            chunks += 1
            used += _generated(result)
            visible += result.text
            if prefill:
                reasoning += result.text
            else:
                turns.append(Message(role="assistant", content=result.text))
            if has_answer(visible, task) or result.finish_reason == "stop":
                finished = True
                break
            if used < deadline:
                note = INTERRUPT.format(used=used, left=deadline - used)
                if prefill:
                    reasoning += note
                else:
                    turns.append(Message(role="user", content=note.strip()))
        forced = not finished and stopped != "budget"
        if forced:
            visible += await _force_answer(
                thinker, task, base, prefill, reasoning, turns, answer_tokens, context
            )
        info.update(
            budget=deadline, chunk=step, used=used, chunks=chunks, forced=forced, interrupted=chunks > 1
        )
        candidate = Candidate(text=visible, model=thinker.id)
        if task.kind == "math":
            from forkpath.verifiers import extract_math_answer

            candidate.answer = extract_math_answer(visible)
        if context.verifier is not None and visible:
            await verify_into(context.verifier, task, candidate, 0)
        return StrategyResult(
            answer=visible or None,
            chosen=0 if visible else None,
            candidates=[candidate] if visible else [],
            stopped=stopped,
            info=info,
        )

    async def _estimate(thinker: Model, task: Task, info: dict[str, object]) -> int:
        template = DIFFICULTY if estimate == "difficulty" else TOKENS
        reply = await thinker.generate(
            GenerateRequest(
                messages=(Message(role="user", content=template.format(prompt=task.prompt)),),
                max_tokens=8,
                temperature=0.0,
            )
        )
        found = deadline_from(reply.text, estimate, min_budget, max_budget)
        info["estimate_reply"] = reply.text.strip()[:40]
        return found if found is not None else max_budget

    return Strategy(run, needs={model: needs})


def _generated(result: GenerateResult) -> int:
    return result.usage.completion_tokens or len(result.tokens)


def _messages(
    base: tuple[Message, ...], prefill: bool, reasoning: str, turns: list[Message]
) -> tuple[Message, ...]:
    if prefill:
        return (*base, Message(role="assistant", content=reasoning)) if reasoning else base
    return (*base, *turns)


async def _force_answer(
    thinker: Model,
    task: Task,
    base: tuple[Message, ...],
    prefill: bool,
    reasoning: str,
    turns: list[Message],
    answer_tokens: int,
    context: Context,
) -> str:
    """The forced final answer (with the closing note), retried once if no answer is readable."""
    for attempt in range(2):
        if budget_reached(context):
            return ""
        if prefill:
            messages = (*base, Message(role="assistant", content=reasoning + TERMINATE))
        else:
            messages = (*base, *turns, Message(role="user", content=TERMINATE_TURN))
        result = await thinker.generate(
            GenerateRequest(
                messages=messages,
                max_tokens=answer_tokens,
                temperature=0.0 if attempt == 0 else 0.7,
                sample_index=attempt,
                stop=("\n\n",),
            )
        )
        text = (TERMINATE if prefill else "\n\n") + result.text
        if task.kind != "math":
            return text
        from forkpath.verifiers import extract_math_answer

        if extract_math_answer(result.text) is not None:
            return text
    return text
