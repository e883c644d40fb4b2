"""Grammar engines for token masks, side by side on one model's vocabulary: llguidance and
outlines-core (xgrammar is reported when it imports; on this machine it needs torch).

For each constraint: the time to compile it for the vocabulary, and the mean time of one full
mask along a fixed valid output (tokenized by the model), plus whether the engine takes the
constraint at all (coverage). Same tokens, same vocabulary, same process, interleaved rounds.

    python bench/constraint_engines.py [--model local/qwen2.5-coder-0.5b] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from forkpath.models import Constraint, get_model
from forkpath.models._llamacpp import LlamaCppModel

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("regex phone", {"regex": r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"}, "(555) 123-4567"),
    ("regex email", {"regex": r"[a-z]{1,12}@[a-z]{1,12}\.(com|org|net)"}, "alice@example.org"),
    ("json schema", {"json_schema": SCHEMA}, '{"name":"Ann Lee","age":31,"tags":["a","bc"]}'),
    (
        "grammar arith",
        {"grammar": 'start: expr\nexpr: term (("+" | "-") term)*\nterm: NUM | "(" expr ")"\nNUM: /[0-9]+/'},
        "(12+3)-45+(6-7)",
    ),
]


def vocab_bytes(model: LlamaCppModel) -> list[bytes]:
    import llama_cpp

    vocab = model.llama_cpp_vocab()
    out: list[bytes] = []
    buf = __import__("ctypes").create_string_buffer(256)
    for t in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, 256, 0, False)
        out.append(bytes(buf[: max(n, 0)]))
    return out


def time_it(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def llguidance_run(model: LlamaCppModel, spec: dict[str, Any], tokens: list[int]) -> tuple[float, float]:
    constraint = Constraint.model_validate(spec)
    from forkpath.models import GenerateRequest

    compile_s, matcher = time_it(
        lambda: model.token_matcher(GenerateRequest(prompt="", constraint=constraint))
    )
    assert matcher is not None
    mask_times = []
    for t in tokens:
        dt, mask = time_it(matcher.allowed)
        assert mask[t], "llguidance refused the reference output"
        mask_times.append(dt)
        matcher.advance(t)
    return compile_s, statistics.mean(mask_times)


def outlines_run(
    pieces: list[bytes], eos: int, spec: dict[str, Any], tokens: list[int], cache: dict[str, Any]
) -> tuple[float, float] | str:
    import outlines_core as oc

    if "grammar" in spec:
        return "no CFG support"
    if "vocab" not in cache:
        by_piece: dict[bytes, list[int]] = {}
        for i, p in enumerate(pieces):
            if i != eos and p:
                by_piece.setdefault(p, []).append(i)
        cache["vocab"] = oc.Vocabulary(eos, by_piece)
    regex = spec.get("regex") or oc.json_schema.build_regex_from_schema(json.dumps(spec["json_schema"]))
    compile_s, index = time_it(lambda: oc.Index(regex, cache["vocab"]))
    guide = oc.Guide(index)
    size = len(pieces)
    mask_times = []
    for t in tokens:

        def mask() -> np.ndarray:
            allowed = np.zeros(size, dtype=bool)
            allowed[guide.get_tokens()] = True
            return allowed

        dt, m = time_it(mask)
        if not m[t]:
            return "refused the reference tokenization"
        mask_times.append(dt)
        guide.advance(t)
    return compile_s, statistics.mean(mask_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = get_model(args.model)
    assert isinstance(model, LlamaCppModel)
    try:
        import xgrammar  # noqa: F401

        xgr = "imports"
    except Exception as e:
        xgr = f"does not import ({type(e).__name__}: {e})"
    pieces = vocab_bytes(model)
    eos = min(model.end_tokens)
    print(f"model {args.model}: vocabulary {len(pieces)} tokens; xgrammar {xgr}")
    # build llguidance's tokenizer once (cached per model) so compile times are per constraint
    model.token_matcher(
        __import__("forkpath.models", fromlist=["x"]).GenerateRequest(
            prompt="", constraint=Constraint(regex="a")
        )
    )
    cache: dict[str, Any] = {}
    print(f"{'constraint':<15} {'engine':<14} {'compile ms':>11} {'mask ms/token':>14}")
    for label, spec, text in CASES:
        tokens = model.tokenize(text)
        runs: dict[str, list[tuple[float, float]]] = {"llguidance": [], "outlines-core": []}
        notes: dict[str, str] = {}
        for _ in range(args.rounds):
            runs["llguidance"].append(llguidance_run(model, spec, tokens))
            got = outlines_run(pieces, eos, spec, tokens, cache)
            if isinstance(got, str):
                notes["outlines-core"] = got
            else:
                runs["outlines-core"].append(got)
        for engine, values in runs.items():
            if engine in notes:
                print(f"{label:<15} {engine:<14} {notes[engine]:>26}")
                continue
            compile_ms = statistics.median(v[0] for v in values) * 1e3
            mask_ms = statistics.median(v[1] for v in values) * 1e3
            print(f"{label:<15} {engine:<14} {compile_ms:>11.1f} {mask_ms:>14.3f}")


if __name__ == "__main__":
    main()
