"""Constrained generation on local models, measured in one run:

1. Validity: 50 prompts per constraint kind (JSON schema, regex, grammar), sampled at
   temperature 0.8 with token masks; every output is checked by an independent validator
   (``json.loads`` + ``jsonschema``, Python ``re.fullmatch``, llguidance byte by byte for the
   grammar). Printed as valid / total per model and kind.
2. Speed: tokens per second generating the same number of tokens (``--tokens``) unconstrained,
   under a mask, and by adaptive rejection sampling, with a constraint that lets the model
   write free text (a JSON object with one long string, and a regex of letters and
   punctuation). Rounds are interleaved (free, mask, rejection, free, ...) and the median is
   reported, with the ratio to unconstrained.

    python bench/constraints.py [--models local/smollm2-135m local/qwen2.5-coder-0.5b] [--prompts 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from forkpath.models import Constraint, GenerateRequest, Message, get_model

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
DATE = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
ARITH = 'start: NUM op NUM (op NUM)? " = " NUM\nop: " + " | " - " | " * "\nNUM: /[0-9]{1,3}/'
KINDS: dict[str, tuple[Constraint, str]] = {
    "json_schema": (
        Constraint(json_schema=SCHEMA),
        "Describe {subject} as a JSON object with name, age and city.",
    ),
    "regex": (Constraint(regex=DATE), "On what date did {subject} happen? Answer with a date."),
    "grammar": (Constraint(grammar=ARITH), "Write a small sum about {subject}, with its result."),
}
SUBJECTS = [
    "a baker", "a pilot", "a painter", "a farmer", "a nurse", "a poet", "a sailor", "a chemist", "a judge",
    "a miner", "a chef", "a tailor", "a diver", "a drummer", "a monk", "a clown", "a banker", "a guard",
    "a weaver", "a potter", "a hunter", "a singer", "a smith", "a scribe", "a cook", "a knight", "a maid",
    "a mayor", "a coach", "a doctor", "a ranger", "a pirate", "a teacher", "a student", "a writer",
    "a dancer", "a builder", "a driver", "a fisher", "a glazier", "a jester", "a keeper", "a lawyer",
    "a mason", "a nanny", "an oracle", "a porter", "a queen", "a runner", "a sheriff",
]  # fmt: skip
FREE_SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 4000}},  # longer than --tokens: no early end
    "required": ["story"],
}
FREE_REGEX = r"[A-Za-z ,.'\n]+"
STORY = "Write a long story about a lighthouse keeper."


async def validity(model_id: str, n_prompts: int, max_tokens: int, threads: int) -> None:
    model = get_model(model_id, n_threads=threads)
    for kind, (constraint, template) in KINDS.items():
        valid = stopped = 0
        tokens: list[int] = []
        for i in range(n_prompts):
            subject = SUBJECTS[i % len(SUBJECTS)]
            request = GenerateRequest(
                messages=(Message(role="user", content=template.format(subject=subject)),),
                max_tokens=max_tokens,
                temperature=0.8,
                seed=7,
                sample_index=i,
                constraint=constraint,
            )
            result = await model.generate(request)
            valid += constraint.accepts(result.text)
            stopped += result.finish_reason == "stop"
            tokens.append(result.usage.completion_tokens)
        print(
            f"{model_id:<26} {kind:<12} valid {valid}/{n_prompts}  finished {stopped}/{n_prompts}  "
            f"mean tokens {statistics.mean(tokens):.1f}",
            flush=True,
        )


async def speed(model_id: str, n_tokens: int, rounds: int, threads: int) -> None:
    model = get_model(model_id, n_threads=threads)
    for label, spec in (("json story", {"json_schema": FREE_SCHEMA}), ("regex text", {"regex": FREE_REGEX})):
        variants: dict[str, Constraint | None] = {
            "unconstrained": None,
            "mask": Constraint.model_validate({**spec, "method": "mask"}),
            "rejection": Constraint.model_validate({**spec, "method": "rejection"}),
        }
        rates: dict[str, list[float]] = {v: [] for v in variants}
        counts: dict[str, list[int]] = {v: [] for v in variants}
        for r in range(rounds + 1):  # round 0 warms up (model load, tokenizer, grammar compile)
            for name, constraint in variants.items():
                request = GenerateRequest(
                    messages=(Message(role="user", content=STORY),),
                    max_tokens=n_tokens,
                    temperature=0.8,
                    seed=11,
                    sample_index=r,
                    constraint=constraint,
                )
                result = await model.generate(request)
                if r:
                    rates[name].append(result.usage.completion_tokens / result.latency_s)
                    counts[name].append(result.usage.completion_tokens)
        base = statistics.median(rates["unconstrained"])
        for name in variants:
            rate = statistics.median(rates[name])
            print(
                f"{model_id:<26} {label:<11} {name:<14} {rate:7.1f} tok/s  ratio {rate / base:5.3f}  "
                f"(median tokens {statistics.median(counts[name]):.0f})",
                flush=True,
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["local/smollm2-135m", "local/qwen2.5-coder-0.5b"])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1: no spin-waiting on a busy machine)"
    )
    parser.add_argument("--skip-validity", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    for model_id in args.models:
        if not args.skip_validity:
            await validity(model_id, args.prompts, args.max_tokens, args.threads)
        if not args.skip_speed:
            await speed(model_id, args.tokens, args.rounds, args.threads)


if __name__ == "__main__":
    asyncio.run(main())
