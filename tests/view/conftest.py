"""Real runs for the viewer's tests, made once per session: fake-model batches (one with hostile
candidates), a SmolLM2 batch, an MCTS search, a token-routing run, a forking-token analysis; a server on a free loopback
port; a headless Chromium (Debian's) driven by Selenium."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkpath import DatasetSpec, Task, load_tasks
from forkpath.batch import BatchConfig, run_batch, write_report
from forkpath.flows import Flow

from ._runs import (
    MCTS,
    ROUTING,
    SCRIPT_A,
    SCRIPT_B,
    SMOLLM2,
    SPECULATIVE,
    LiveServer,
    fake_batch,
    flow_run,
    forks_run,
    write_dataset,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of real runs (made once: the SmolLM2 batch takes a few seconds)."""
    root = tmp_path_factory.mktemp("runs")
    work = tmp_path_factory.mktemp("work")
    data = write_dataset(work / "tasks.jsonl")
    fake_batch(root, "fake-a", SCRIPT_A, data)
    fake_batch(root, "fake-b", SCRIPT_B, data)
    question = Task(id="q-42", prompt="Q: what is 6*7?", kind="math", answer="42")
    flow_run(root, "mcts", MCTS.replace("STORE", str(work / "store.db")), question)
    flow_run(root, "routing", ROUTING, question)
    flow_run(root, "speculative", SPECULATIVE, question)
    forks_run(root)
    smol = Flow.from_yaml_text(SMOLLM2)
    tasks = load_tasks(DatasetSpec(name="gsm8k", limit=2))
    config = BatchConfig(run_id="smollm2", out_dir=root / "smollm2", dataset="gsm8k")
    asyncio.run(run_batch(smol, tasks, config))
    write_report([root / "smollm2"])
    return root


@pytest.fixture(scope="session")
def server(runs_dir: Path) -> Iterator[LiveServer]:
    with LiveServer(runs_dir) as live:
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Selenium through Debian's chromedriver."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail("the viewer's browser tests need Chromium: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="forkpath-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages' screenshots go: $FORKPATH_VIEW_SCREENSHOTS, else a temporary folder."""
    folder = os.environ.get("FORKPATH_VIEW_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
