"""``forkpath store stats|clear``, through the typer app the core CLI mounts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkpath._cli._store import app
from forkpath.models import FakeModel, GenerateRequest
from forkpath.store import NewChild, open_store

from .test_faults import free_port

runner = CliRunner()


@pytest.fixture
def filled(tmp_path: Path) -> str:
    """A SQLite store with a cache entry in ``proj`` and nodes and results in ``run-1``."""
    url = f"sqlite://{tmp_path}/store.db"

    async def fill() -> None:
        async with open_store(url) as store:
            await FakeModel(cache=store.generation_cache("proj")).generate(
                GenerateRequest(prompt="hi", max_tokens=4)
            )
            root = await store.trajectories.add_root("run-1", tokens=[1])
            await store.trajectories.add_children("run-1", root.key, [NewChild(tokens=(2,))])
            await store.put_result("run-1", "t1", {"ok": True})

    asyncio.run(fill())
    return url


def test_stats_json_lists_every_namespace(filled: str) -> None:
    done = runner.invoke(app, ["stats", "--store", filled, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["store"] == filled
    rows = {r["namespace"]: r for r in report["namespaces"]}
    assert set(rows) == {"proj", "run-1"}
    assert (rows["proj"]["cache_entries"], rows["proj"]["nodes"], rows["proj"]["results"]) == (1, 0, 0)
    assert (rows["run-1"]["cache_entries"], rows["run-1"]["nodes"], rows["run-1"]["results"]) == (0, 2, 1)
    assert rows["proj"]["cache_bytes"] > 0


def test_stats_table_for_people(filled: str) -> None:
    done = runner.invoke(app, ["stats", "--store", filled, "--namespace", "run-1"])
    assert done.exit_code == 0, done.output
    assert "run-1" in done.stdout and "proj" not in done.stdout
    assert "nodes" in done.stdout and "results" in done.stdout


def test_the_env_var_picks_the_store(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORKPATH_STORE", filled)
    done = runner.invoke(app, ["stats", "--json"])
    assert json.loads(done.stdout)["store"] == filled


def test_clear_all_empties_one_namespace(filled: str) -> None:
    args = ["clear", "--store", filled, "--namespace", "run-1", "--what", "all"]
    refused = runner.invoke(app, args, input="n\n")
    assert refused.exit_code == 1 and "everything" in refused.output
    done = runner.invoke(app, [*args, "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"store": filled, "namespace": "run-1", "what": "all", "removed": 3}
    after = json.loads(runner.invoke(app, ["stats", "--store", filled, "--json"]).stdout)
    assert [r["namespace"] for r in after["namespaces"]] == ["proj"]


def test_clear_defaults_to_the_cache_and_keeps_a_runs_results(tmp_path: Path) -> None:
    """`clear -n default` empties the cache namespace "default", not the batch run "default"."""
    url = f"sqlite://{tmp_path}/store.db"

    async def fill() -> None:
        async with open_store(url) as store:
            model = FakeModel(cache=store.generation_cache("default"))
            for prompt in ("one", "two"):
                await model.generate(GenerateRequest(prompt=prompt, max_tokens=4))
            await store.put_result("default", "t1", {"ok": True})

    asyncio.run(fill())
    done = runner.invoke(app, ["clear", "--store", url, "-n", "default", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"store": url, "namespace": "default", "what": "cache", "removed": 2}
    [row] = json.loads(runner.invoke(app, ["stats", "--store", url, "--json"]).stdout)["namespaces"]
    assert (row["namespace"], row["cache_entries"], row["results"]) == ("default", 0, 1)
    done = runner.invoke(app, ["clear", "--store", url, "-n", "default", "-w", "results", "--yes"])
    assert done.exit_code == 0 and "cleared results of namespace 'default' (1 records)" in done.stdout
    assert json.loads(runner.invoke(app, ["stats", "--store", url, "--json"]).stdout)["namespaces"] == []


def test_clear_asks_about_the_area_it_will_remove(filled: str) -> None:
    refused = runner.invoke(app, ["clear", "--store", filled, "-n", "proj"], input="n\n")
    assert refused.exit_code == 1
    assert "Remove the generation cache entries of namespace 'proj'?" in refused.output


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    done = runner.invoke(app, ["stats", "--store", f"redis://127.0.0.1:{port}/0"])
    assert done.exit_code == 2
    assert done.output.strip() == f"error: redis://127.0.0.1:{port}/0 unreachable: Connection refused"
    done = runner.invoke(app, ["clear", "--store", f"{tmp_path}/s.db", "--namespace", "has space", "--yes"])
    assert done.exit_code == 2 and "invalid store namespace 'has space'" in done.output
    assert "Traceback" not in done.output
    done = runner.invoke(
        app, ["clear", "--store", f"{tmp_path}/s.db", "-n", "ns", "--what", "nodes", "--yes"]
    )
    message = " ".join(done.output.replace("│", " ").split())  # rich boxes and wraps the usage error
    assert done.exit_code == 2 and "Invalid value for '--what'" in message
    assert "'nodes' is not one of 'cache', 'trajectories', 'results', 'all'" in message
    assert "Traceback" not in done.output
