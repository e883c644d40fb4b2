"""Faults, and what the user sees: Redis down at start or restarted mid-run, a read-only or full
disk, foreign files. In every case the error is one line naming the store, and no result that
was reported written is lost."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from forkpath import StoreError
from forkpath.models import FakeModel, GenerateRequest
from forkpath.store import NewChild, SQLiteBackend, Store, open_store

from .conftest import make_backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a free port, persisting to an append-only file in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.025)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not any(
        os.access(os.path.join(d, "redis-server"), os.X_OK) for d in os.environ["PATH"].split(os.pathsep)
    ):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (needs root; the test is skipped otherwise)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- Redis ------------------------------------------------------------------------------------
def test_redis_unreachable_at_start_is_one_clear_error() -> None:
    port = free_port()
    with pytest.raises(StoreError) as e:
        open_store(f"redis://:secret@127.0.0.1:{port}/0")
    assert one_line(e.value) == f"redis://:***@127.0.0.1:{port}/0 unreachable: Connection refused"


async def test_redis_unreachable_falls_back_to_sqlite_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="forkpath.store")
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = open_store(url, fallback="sqlite")
    try:
        assert isinstance(store.backend, SQLiteBackend)
        assert store.backend.path == tmp_path / ".forkpath" / "store.db"
        await store.put_result("run", "t", {"ok": True})
        assert await store.finished_ids("run") == {"t"}
    finally:
        await store.aclose()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{url} unreachable: Connection refused; falling back to sqlite://{tmp_path}" in warning


async def test_redis_restart_mid_run_loses_no_finished_result(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url)
    executed: list[str] = []
    model = FakeModel(script={"task": ["answer"]}, cache=store.generation_cache("proj"))

    async def run_batch(tasks: list[str]) -> None:
        """A batch runner's loop: skip what is finished, run and record the rest."""
        finished = await store.finished_ids("run-1")
        for task in tasks:
            if task in finished:
                continue
            result = await model.generate(GenerateRequest(prompt=f"task {task}", max_tokens=8))
            executed.append(task)
            await store.put_result("run-1", task, {"text": result.text})

    tasks = [f"t{i:02d}" for i in range(20)]
    try:
        await run_batch(tasks[:10])
        root = await store.trajectories.add_root("run-1", tokens=[1, 2])
        await store.trajectories.update_stats("run-1", root.key, 3, 1.5)
        redis_server.kill()

        with pytest.raises(StoreError) as e:
            await run_batch(tasks)
        assert one_line(e.value) == f"{redis_server.url} unreachable: Connection refused"
        with pytest.raises(StoreError, match="unreachable: Connection refused"):
            await store.trajectories.update_stats("run-1", root.key)
        with pytest.raises(StoreError, match="unreachable"):  # the cache does not silently step aside
            await model.generate(GenerateRequest(prompt="task t00", max_tokens=8))

        redis_server.start()  # same port, same append-only file; the same store object reconnects
        assert await store.finished_ids("run-1") == set(tasks[:10])
        node = await store.trajectories.get_node("run-1", root.key)
        assert node is not None and (node.visits, node.value_sum) == (3, 1.5)
        calls_before = model.calls
        assert (await model.generate(GenerateRequest(prompt="task t03", max_tokens=8))).cached
        assert model.calls == calls_before
        await run_batch(tasks)
        assert await store.finished_ids("run-1") == set(tasks)
        assert sorted(executed) == tasks, "each task ran exactly once across the crash"
    finally:
        await store.aclose()


def test_redis_store_of_another_format_is_refused(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.hset("forkpath:meta", "format", 99)
    client.close()
    with pytest.raises(StoreError, match="store of format version 99; this forkpath reads 1"):
        open_store(redis_server.url)


# -- SQLite -----------------------------------------------------------------------------------
def test_sqlite_in_an_uncreatable_place_fails_at_open() -> None:
    with pytest.raises(StoreError) as e:
        open_store("sqlite:///proc/forkpath-test/store.db")
    assert one_line(e.value).startswith(
        "sqlite:///proc/forkpath-test/store.db: cannot create directory /proc/"
    )


async def test_sqlite_on_a_read_only_filesystem(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        url = f"sqlite://{mnt}/store.db"
        async with open_store(url) as store:
            for i in range(5):
                await store.put_result("run", f"t{i}", {"i": i})
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(StoreError) as e:
            open_store(url)
        assert one_line(e.value) == (
            f"{url}: unable to open database file "
            f"(directory {mnt} is read-only; SQLite's WAL needs to write next to the file)"
        )
        with pytest.raises(StoreError, match="Read-only file system"):
            open_store(f"{mnt}/new/store.db")
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        async with open_store(url) as store:
            assert await store.finished_ids("run") == {f"t{i}" for i in range(5)}


async def test_sqlite_disk_full_keeps_what_was_written_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "512k") as mnt:
        url = f"sqlite://{mnt}/store.db"
        filler = mnt / "filler"
        filler.write_bytes(b"x" * 200_000)
        async with open_store(url) as store:
            written = 0
            with pytest.raises(StoreError) as e:
                for i in range(10_000):
                    await store.put_result("run", f"t{i}", {"i": i, "pad": "x" * 2000})
                    written += 1
            assert one_line(e.value) == f"{url}: database or disk is full (no space left for the store)"
            assert written > 0
            assert await store.finished_ids("run") == {f"t{i}" for i in range(written)}
            filler.unlink()
            await store.put_result("run", "after", {"ok": True})  # the same store works once there is room
        async with open_store(url) as store:
            assert len(await store.finished_ids("run")) == written + 1


def test_sqlite_file_size_limit_is_a_store_error_and_loses_nothing(tmp_path: Path) -> None:
    """A full disk without root: the process may not grow files past RLIMIT_FSIZE."""
    db = tmp_path / "store.db"
    script = textwrap.dedent(
        """
        import asyncio, json, resource, signal, sys
        from forkpath import StoreError
        from forkpath.store import open_store

        async def main():
            store = open_store(sys.argv[1])
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
            resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
            written = 0
            try:
                for i in range(10_000):
                    await store.put_result("run", f"t{i}", {"i": i, "pad": "x" * 2000})
                    written += 1
            except StoreError as e:
                print(json.dumps({"written": written, "error": str(e)}))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=120
    )
    report = json.loads(done.stdout)
    assert report["error"].startswith(f"sqlite://{db}: disk I/O error")
    assert report["written"] > 0
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM results WHERE run = 'run'").fetchone()[0] == report["written"]
        )


def test_a_foreign_file_is_not_opened_as_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as e:
        open_store(str(path))
    assert one_line(e.value) == f"sqlite://{path}: file is not a database (not a forkpath store)"
    assert path.read_text().startswith("my notes"), "the file was left alone"


def test_a_sqlite_store_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteBackend(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'format'")
    with pytest.raises(StoreError, match="store of format version 99; this forkpath reads 1"):
        open_store(str(path))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_closed_store_says_so(kind: str, tmp_path: Path) -> None:
    store = Store(make_backend(kind, tmp_path))
    await store.aclose()
    with pytest.raises(StoreError, match="store is closed"):
        await store.trajectories.add_root("ns", tokens=[1])
    with pytest.raises(StoreError, match="store is closed"):
        await store.trajectories.add_children("ns", "0" * 32, [NewChild(tokens=(1,))])
