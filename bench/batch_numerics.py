"""How far llama.cpp's batched evaluation is from one-token-at-a-time evaluation of the same tokens.

Greedy speculative decoding is the large model's greedy decoding only if the target's batched
verification gives the same logits as decoding one token at a time. This script decodes N tokens
greedily one at a time after a prompt, then evaluates the same tokens in one batch from the same
cached prompt, and prints the largest absolute logit difference at each position and whether
the argmax agrees. Run it under any build of llama-cpp-python to compare builds.

    python bench/batch_numerics.py [--model local/qwen2.5-coder-1.5b] [--tokens 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    from forkpath.models import _local

    path = _local.resolve(args.model.removeprefix("local/"))
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=args.threads, verbose=False)
    vocab = llm.n_vocab()
    prompt = llm.tokenize(b'def fibonacci(n):\n    """Return the n-th Fibonacci number, iteratively."""\n')

    def logits(i: int) -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i), shape=(vocab,)).copy()

    llm.reset()
    llm.eval(prompt)
    single, tokens = [], []
    for _ in range(args.tokens):
        row = logits(-1)
        single.append(row)
        tokens.append(int(np.argmax(row)))
        llm.eval([tokens[-1]])
    llm.reset()
    llm.eval(prompt[:-1])
    head, tail = len(prompt) - 1, [prompt[-1], *tokens[:-1]]
    llm._ctx.kv_cache_seq_rm(-1, head, -1)
    llm._batch.set_batch(batch=tail, n_past=head, logits_all=True)
    llm._ctx.decode(llm._batch)
    batched = [logits(i) for i in range(len(tail))]
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(single, batched, strict=True)]
    agree = sum(int(np.argmax(a)) == int(np.argmax(b)) for a, b in zip(single, batched, strict=True))
    print(f"$ python {' '.join(sys.argv)}")
    print(
        f"llama-cpp-python {llama_cpp.__version__}, {args.model}, {args.tokens} tokens, {args.threads} thread(s)"
    )
    print(f"max |logit(single) - logit(batched)| per position: {[round(d, 3) for d in diffs]}")
    print(
        f"largest {max(diffs):.3f}, median {float(np.median(diffs)):.3f}; argmax agrees at {agree}/{len(diffs)}"
    )


if __name__ == "__main__":
    main()
