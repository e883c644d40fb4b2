"""``python -m forkpath.models._llama_server ARGS``: ``python -m llama_cpp.server ARGS`` with
llama.cpp's extra weight buffers turned off where they crash (CPUs with AMX, see
:func:`~forkpath.models._llamacpp.extra_buffers_safe`). The tests and the bench scripts start
their OpenAI-compatible server through it; the arguments are llama-cpp-python's own.
"""

from __future__ import annotations

import runpy

from forkpath.models._llamacpp import extra_buffers_safe, model_params


def main() -> None:
    with model_params(use_extra_bufts=extra_buffers_safe()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
