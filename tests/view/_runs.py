"""What the viewer's tests run on: the flows of its real runs, and the viewer served on a free
loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

from forkpath import DatasetSpec, Task, load_tasks
from forkpath.batch import BatchConfig, run_batch, write_report
from forkpath.flows import Flow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
"""A candidate's text that would run if the viewer did not escape it."""

BON = """\
name: NAME
models:
  default: {model: fake/m, options: {latency_s: LATENCY, script: SCRIPT, fail_on: {"q5": "simulated provider rejection"}}}
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {n: 2, temperature: 1.0, early_stop: false, top_logprobs: 3}
edges:
  - {from: sample, to: end}
"""
SCRIPT_A = {
    "q0": ["The answer is 0.", "The answer is 9."],
    "q1": ["The answer is 2.", XSS + " The answer is 1."],
    "q2": ["The answer is 7.", "The answer is 8."],
    "q3": ["The answer is 3."],
    "q4": ["The answer is 4."],
}
SCRIPT_B = {
    "q0": ["The answer is 5."],  # fails where A passed
    "q1": ["The answer is 1."],  # passes as A did, another answer
    "q2": ["The answer is 2."],  # passes where A failed
    "q3": ["The answer is 3."],  # the same
    "q4": ["The answer is 4."],
}

MCTS = """\
name: mcts-fake
models:
  default:
    model: fake/m
    options:
      confidence: 0.99
      script:
        "assistant: Step 1\\nStep 2a\\n": ["The answer is 41.\\n"]
        "assistant: Step 1\\nStep 2b\\n": ["The answer is 42.\\n"]
        "assistant: Step 1\\n": ["Step 2a\\n", "Step 2b\\n"]
        "assistant: Other\\n": ["The answer is 7.\\n"]
        "user: Q": ["Step 1\\nStep 2a\\nThe answer is 41.\\n", "Other\\n"]
verifier: math_answer
store: {url: STORE}
nodes:
  search:
    strategy: mcts
    params: {max_simulations: 12, step: {kind: line, expansion_width: 2, temperature: 1.0}}
edges:
  - {from: search, to: end}
"""

ROUTING = """\
name: token-routing-fake
models:
  small: {model: fake/small, options: {script: {"Q": ["The answer is 42."]}, confidence: 0.7}}
  large: {model: fake/large, options: {script: {"Q": ["The answer is 42."]}}}
nodes:
  route:
    strategy: token_routing
    params: {router: {name: entropy, threshold: 2.0}, max_tokens: 40}
edges:
  - {from: route, to: end}
"""

SPECULATIVE = """\
name: speculative-fake
models:
  small: {model: fake/small, options: {script: {"Q": ["The answer is 41, I think."]}}}
  large: {model: fake/large, options: {script: {"Q": ["The answer is 42, I am sure."]}}}
nodes:
  solve:
    strategy: speculative_decoding
    params: {max_tokens: 40, draft_tokens: 4}
edges:
  - {from: solve, to: end}
"""

SMOLLM2 = """\
name: smollm2-best-of-2
models:
  default: local/smollm2-135m
verifier: math_answer
nodes:
  sample:
    strategy: best_of_n
    params: {n: 2, temperature: 0.8, max_tokens: 16, early_stop: false, top_logprobs: 5}
edges:
  - {from: sample, to: end}
"""


def write_dataset(path: Path, n: int = 6) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"t{i}", "prompt": f"q{i}: what is {i}?", "answer": i}) + "\n")
    return path


def fake_batch(root: Path, name: str, script: dict[str, list[str]], data: Path, latency: float = 0.0) -> Path:
    flow = Flow.from_yaml_text(
        BON.replace("NAME", name).replace("SCRIPT", json.dumps(script)).replace("LATENCY", str(latency))
    )
    tasks = load_tasks(DatasetSpec(name="jsonl", path=str(data), fields={"answer": "answer"}))  # type: ignore[arg-type]
    out = root / name
    asyncio.run(run_batch(flow, tasks, BatchConfig(run_id=name, out_dir=out, dataset=str(data))))
    write_report([out])
    return out


def flow_run(root: Path, name: str, yaml_text: str, task: Task) -> Path:
    flow = Flow.from_yaml_text(yaml_text)
    asyncio.run(flow.run(task, run_id=name, runs_dir=root))
    return root / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """The viewer's app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        import uvicorn

        from forkpath.server import create_view_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_view_app(folder), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the viewer did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


FORKS_ANSWER = "I pick X and say"
FORKS_AT = FORKS_ANSWER.index("X")


def forks_run(root: Path, name: str = "forks") -> Path:
    """A real forking-token analysis (``forkpath._forks``) of the fake model with a planted
    forking token: before X the answer ends yes or no by turns, after it always yes."""
    import asyncio

    from forkpath._forks import analyze_forks
    from forkpath.models import FakeModel, Message

    model = FakeModel(script={"I pick X": [" yes"], "pick one": [" yes", " no"]})

    async def last_word(text: str) -> str:
        return text.split()[-1] if text.split() else "none"

    report = asyncio.run(
        analyze_forks(
            model,
            [Message(role="user", content="pick one")],
            model.tokenize(FORKS_ANSWER),
            outcome=last_word,
            samples=16,
            max_tokens=32,
        )
    )
    report.task = "demo/0"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    report.to_json(folder / "forks.json")
    return folder
