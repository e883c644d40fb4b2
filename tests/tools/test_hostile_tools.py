"""Hostile code given to the ``python`` tool is contained exactly like hostile candidates: the same
sandbox, the same limits, the same checks as tests/verifiers/test_hostile.py (whose helpers these
reuse), and the agent goes on with an error observation."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from forkpath.models import FakeModel, Message, ToolCall
from forkpath.tools import PythonTool, call_tool, run_agent
from tests.verifiers.test_hostile import ROOT, needs_root, sandbox_processes


async def run(code: str, **limits: float) -> tuple[str, bool, dict]:
    tool = PythonTool(**limits)  # type: ignore[arg-type]
    call = ToolCall(id="c", name="python", arguments=__import__("json").dumps({"code": code}))
    result = await call_tool(tool, call)
    return result.output, result.error, result.details


async def still_works() -> None:
    output, error, _ = await run("print(2 + 2)")
    assert (output.strip(), error) == ("4", False)
    if ROOT:
        assert sandbox_processes() == []


async def test_an_infinite_loop_times_out() -> None:
    output, error, details = await run("while True:\n    pass\n", timeout_s=1)
    assert error and details["timed_out"] and "timed out after 1 s" in output
    await still_works()


@needs_root
async def test_a_fork_bomb_is_contained() -> None:
    _, error, _ = await run("import os\nwhile True:\n    os.fork()\n", timeout_s=3)
    assert error
    await still_works()


async def test_a_memory_bomb_hits_the_memory_limit() -> None:
    output, error, details = await run("block = bytearray(10**10)\n", timeout_s=3, memory_mb=256)
    assert error and details["exit_code"] != 0 and "MemoryError" in output
    await still_works()


async def test_huge_output_is_cut_for_the_model() -> None:
    output, _, _ = await run("while True:\n    print('x' * 100000)\n", timeout_s=2)
    assert len(output) < 5000 and "more characters cut" in output
    await still_works()


@needs_root
async def test_no_network() -> None:
    code = (
        "import socket\n"
        "for host, port in [('127.0.0.1', 6379), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=1).close()\n"
        "        print('connected', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, e.errno)\n"
    )
    output, _, _ = await run(code)
    assert "connected" not in output and output.count("refused") == 2
    if socket.socket().connect_ex(("127.0.0.1", 6379)) == 0:
        assert "refused 127.0.0.1" in output


@needs_root
async def test_writes_outside_the_work_directory_do_not_reach_the_host() -> None:
    tag = f"forkpath-tool-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{tag}", f"/root/{tag}", f"{os.getcwd()}/{tag}"]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "        print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('refused', path, type(e).__name__)\n"
    )
    output, _, _ = await run(code)
    assert f"refused /root/{tag}" in output
    for target in targets:
        assert not Path(target).exists(), f"{target} reached the host"


async def test_the_agent_goes_on_after_hostile_code() -> None:
    bomb = '<tool_call>{"name": "python", "arguments": {"code": "while True: pass"}}</tool_call>'
    model = FakeModel(script={"timed out": ["That did not finish; the answer is unknown."], "Go": [bomb]})
    result = await run_agent(model, [Message(role="user", content="Go")], [PythonTool(timeout_s=1)])
    assert result.stopped == "done" and result.steps[0].results[0].error
    assert result.answer == "That did not finish; the answer is unknown."


@pytest.mark.parametrize("arguments", ['{"code": 5}', '{"program": "print(1)"}', "[1]", "not json"])
async def test_bad_arguments_are_error_observations(arguments: str) -> None:
    result = await call_tool(PythonTool(), ToolCall(id="c", name="python", arguments=arguments))
    assert result.error and result.output.startswith("error:")
