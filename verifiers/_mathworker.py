"""The process that compares math answers with math-verify; started and fed by :mod:`._math`.

Run as ``python -I _mathworker.py`` (never imported): it answers ``{"ready": true}`` once
math-verify is loaded, then reads one JSON request per line on stdin and writes one JSON answer
per line on stdout. Every comparison runs in this process's main thread, where math-verify's
SIGALRM timeouts work; sympy stuck in C code does not see SIGALRM, and the parent kills the
process then. It exits when stdin closes (its parent is gone).
"""

import json
import resource
import sys

MEMORY_LIMIT = 2 * 2**30  # sympy on a pathological answer can grow without end


def compare(reference: str, candidate: str, float_rounding: int, timeout_s: int) -> bool:
    """math-verify's verdict on two final answers; a parse failure or timeout is a mismatch."""
    from math_verify import parse, verify

    try:
        gold = parse(f"${reference}$", parsing_timeout=timeout_s)
        pred = parse(f"${candidate}$", parsing_timeout=timeout_s)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, float_rounding=float_rounding, timeout_seconds=timeout_s))
    except Exception:  # math-verify raises on pathological input; that is a mismatch, not a crash
        return False


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        import math_verify  # noqa: F401 - loaded before the first request, so it is not timed
    except ImportError as e:
        print(json.dumps({"error": f"cannot import math_verify: {e}"}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        equal = compare(
            request["reference"], request["candidate"], request["float_rounding"], request["timeout_s"]
        )
        print(json.dumps({"equal": equal}), flush=True)


if __name__ == "__main__":
    main()
