"""The SQLite backend: one file, WAL, safe for several processes on one machine.

Each :class:`SQLiteBackend` owns one connection and one thread: every operation runs there as a
whole (a write as one ``BEGIN IMMEDIATE`` transaction), so two coroutines of one process never
interleave statements of their transactions, and processes serialise on SQLite's write lock
(waiting up to ``busy_timeout_s``). A process that was forked after opening reopens its own
connection on first use, since a SQLite connection must not cross ``fork``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from forkpath._errors import StoreError
from forkpath.store._base import FORMAT_VERSION, ClearWhat, NodeRecord, StoreBackend, StoreStats

logger = logging.getLogger("forkpath.store")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache (
    ns TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    accessed REAL NOT NULL, expires REAL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_lru ON cache (ns, accessed, key);
CREATE INDEX IF NOT EXISTS cache_expiry ON cache (ns, expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY, ns TEXT NOT NULL, key TEXT NOT NULL, parent TEXT,
    kind TEXT NOT NULL, length INTEGER NOT NULL, depth INTEGER NOT NULL, body TEXT NOT NULL,
    visits INTEGER NOT NULL DEFAULT 0, value_sum REAL NOT NULL DEFAULT 0, rollout TEXT,
    UNIQUE (ns, key)
);
CREATE INDEX IF NOT EXISTS nodes_children ON nodes (ns, parent, id);
CREATE INDEX IF NOT EXISTS nodes_length ON nodes (ns, kind, length);
CREATE TABLE IF NOT EXISTS claims (
    ns TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    run TEXT NOT NULL, task TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run, task)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    ns TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (ns, name)
) WITHOUT ROWID;
"""

_BATCH = 500  # well under SQLite's bound-parameter limit

# What each clear removes: (table, namespace column) pairs, and counters (None: all of them).
_CLEARED: dict[ClearWhat, tuple[tuple[tuple[str, str], ...], tuple[str, ...] | None]] = {
    "cache": ((("cache", "ns"),), ("entries", "evictions")),
    "trajectories": ((("nodes", "ns"), ("claims", "ns")), ()),
    "results": ((("results", "run"),), ()),
    "all": ((("cache", "ns"), ("nodes", "ns"), ("claims", "ns"), ("results", "run")), None),
}


def _hint(message: str) -> str:
    lowered = message.lower()
    for needle, hint in (
        ("readonly", "the file or its directory is read-only"),
        ("unable to open", "missing directory or no permission"),
        ("disk is full", "no space left for the store"),
        ("not a database", "not a forkpath store"),
        ("disk i/o error", "the file could not be written; disk full or file size limit?"),
    ):
        if needle in lowered:
            return f" ({hint})"
    return ""


class SQLiteBackend(StoreBackend):
    """A store in one SQLite file.

    Args:
        path: the database file; its directory is created if missing.
        busy_timeout_s: how long a writer waits for another process's transaction.
        touch_interval_s: a cache hit records its access time only if the last one is older
            than this, so that hot entries do not turn every read into a write.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0, touch_interval_s: float = 1.0
    ):
        self.path = Path(os.path.abspath(os.fspath(path)))
        self.url = f"sqlite://{self.path}"
        self.busy_timeout_s = busy_timeout_s
        self.touch_interval_s = touch_interval_s
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._open()

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.url!r})"

    # -- plumbing -----------------------------------------------------------------------------
    def _open(self) -> None:
        self._pid = os.getpid()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forkpath-sqlite")
        try:
            self._executor.submit(self._call, self._connect).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _connect(self, _: sqlite3.Connection | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.url}: cannot create directory {self.path.parent}: {e.strerror}") from e
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning(
                    "%s: journal mode is %s, not WAL (filesystem without shared memory?)", self.url, mode
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
                found = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        if found != str(FORMAT_VERSION):
            conn.close()
            raise StoreError(
                f"{self.url}: store of format version {found}; this forkpath reads {FORMAT_VERSION}"
            )
        self._conn = conn

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection (in the backend's thread), translating SQLite errors."""
        try:
            return fn(self._conn)  # type: ignore[arg-type]
        except sqlite3.Error as e:
            message = str(e) or type(e).__name__
            raise StoreError(f"{self.url}: {message}{self._hint(message)}") from e

    def _hint(self, message: str) -> str:
        """Why SQLite failed, in the user's terms (its own messages do not say)."""
        if "unable to open" in message.lower() or "readonly" in message.lower():
            folder = self.path.parent
            if not folder.is_dir():
                return f" (directory {folder} does not exist)"
            if not os.access(folder, os.W_OK):
                return f" (directory {folder} is read-only; SQLite's WAL needs to write next to the file)"
            if self.path.exists() and not os.access(self.path, os.W_OK):
                return " (the file is read-only)"
        return _hint(message)

    def _write_tx(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return transaction

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        if self._closed:
            raise StoreError(f"{self.url}: store is closed")
        if os.getpid() != self._pid:
            logger.info("%s: reopening in forked process %d", self.url, os.getpid())
            self._open()
        op = self._write_tx(fn) if write else fn
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, op)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid and self._conn is not None:
            conn = self._conn
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    # -- generation cache ---------------------------------------------------------------------
    async def cache_get(self, ns: str, key: str, now: float) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT body, accessed FROM cache WHERE ns = ? AND key = ?", (ns, key)
            ).fetchone()
            if row is None:
                return None
            if row[1] < now - self.touch_interval_s:
                conn.execute("UPDATE cache SET accessed = ? WHERE ns = ? AND key = ?", (now, ns, key))
            return str(row[0])

        return await self._run(op)

    async def cache_put(
        self, ns: str, key: str, body: str, *, now: float, ttl_s: float | None, max_entries: int | None
    ) -> int:
        expires = now + ttl_s if ttl_s is not None else None

        def op(conn: sqlite3.Connection) -> int:
            existed = conn.execute("SELECT 1 FROM cache WHERE ns = ? AND key = ?", (ns, key)).fetchone()
            conn.execute(
                "INSERT INTO cache (ns, key, body, accessed, expires) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (ns, key) DO UPDATE SET body = excluded.body, accessed = excluded.accessed, "
                "expires = excluded.expires",
                (ns, key, body, now, expires),
            )
            delta = 0 if existed else 1
            delta -= conn.execute(
                "DELETE FROM cache WHERE ns = ? AND expires IS NOT NULL AND expires <= ?", (ns, now)
            ).rowcount
            evicted = 0
            if max_entries is not None:
                row = conn.execute(
                    "SELECT value FROM counters WHERE ns = ? AND name = 'entries'", (ns,)
                ).fetchone()
                over = (row[0] if row else 0) + delta - max_entries
                if over > 0:
                    evicted = conn.execute(
                        "DELETE FROM cache WHERE ns = ? AND key IN "
                        "(SELECT key FROM cache WHERE ns = ? ORDER BY accessed, key LIMIT ?)",
                        (ns, ns, over),
                    ).rowcount
                    delta -= evicted
                    _bump(conn, ns, "evictions", evicted)
            _bump(conn, ns, "entries", delta)
            return evicted

        return await self._run(op, write=True)

    # -- trajectory nodes ---------------------------------------------------------------------
    async def node_add(self, ns: str, parent: str | None, nodes: Sequence[NodeRecord]) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            if (
                parent is not None
                and not conn.execute("SELECT 1 FROM nodes WHERE ns = ? AND key = ?", (ns, parent)).fetchone()
            ):
                raise StoreError(f"{self.url}: no node {parent} in namespace {ns!r} to add children to")
            added = []
            for r in nodes:
                cur = conn.execute(
                    "INSERT INTO nodes (ns, key, parent, kind, length, depth, body) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (ns, key) DO NOTHING",
                    (ns, r.key, parent, r.kind, r.length, r.depth, r.body),
                )
                if cur.rowcount == 1:
                    added.append(r.key)
            return added

        return await self._run(op, write=True)

    async def node_get_many(self, ns: str, keys: Sequence[str]) -> dict[str, NodeRecord]:
        def op(conn: sqlite3.Connection) -> dict[str, NodeRecord]:
            conn.execute("BEGIN")  # one snapshot for the nodes and their children
            try:
                rows: list[tuple] = []
                children: dict[str, list[str]] = {}
                for i in range(0, len(keys), _BATCH):
                    batch = list(keys[i : i + _BATCH])
                    marks = ",".join("?" * len(batch))
                    rows += conn.execute(
                        "SELECT key, parent, kind, length, depth, body, visits, value_sum, rollout FROM nodes "
                        f"WHERE ns = ? AND key IN ({marks})",
                        (ns, *batch),
                    ).fetchall()
                    for parent, key in conn.execute(
                        f"SELECT parent, key FROM nodes WHERE ns = ? AND parent IN ({marks}) ORDER BY id",
                        (ns, *batch),
                    ):
                        children.setdefault(parent, []).append(key)
            finally:
                conn.execute("COMMIT")
            return {
                r[0]: NodeRecord(
                    key=r[0], parent=r[1], kind=r[2], length=r[3], depth=r[4], body=r[5],
                    visits=r[6], value_sum=r[7], rollout=r[8], children=tuple(children.get(r[0], ())),
                )
                for r in rows
            }  # fmt: skip

        return await self._run(op)

    async def node_update(self, ns: str, deltas: Sequence[tuple[str, int, float]]) -> list[tuple[int, float]]:
        def op(conn: sqlite3.Connection) -> list[tuple[int, float]]:
            out = []
            for key, visits, value in deltas:
                row = conn.execute(
                    "UPDATE nodes SET visits = visits + ?, value_sum = value_sum + ? WHERE ns = ? AND key = ? "
                    "RETURNING visits, value_sum",
                    (visits, value, ns, key),
                ).fetchone()
                if row is None:
                    raise StoreError(f"{self.url}: no node {key} in namespace {ns!r} to update")
                out.append((int(row[0]), float(row[1])))
            return out

        return await self._run(op, write=True)

    async def node_set_rollout(self, ns: str, key: str, body: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE nodes SET rollout = ? WHERE ns = ? AND key = ?", (body, ns, key)
                ).rowcount
                == 1
            )

        return await self._run(op, write=True)

    async def node_lengths(self, ns: str, kind: str, max_length: int) -> list[int]:
        def op(conn: sqlite3.Connection) -> list[int]:
            return [
                int(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT length FROM nodes WHERE ns = ? AND kind = ? AND length <= ? ORDER BY length DESC",
                    (ns, kind, max_length),
                )
            ]

        return await self._run(op)

    async def claim(self, ns: str, key: str, owner: str, *, now: float, ttl_s: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT owner, expires FROM claims WHERE ns = ? AND key = ?", (ns, key)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)", (ns, key, owner, now + ttl_s))
            return True

        return await self._run(op, write=True)

    async def release(self, ns: str, key: str, owner: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM claims WHERE ns = ? AND key = ? AND owner = ?"
            return conn.execute(sql, (ns, key, owner)).rowcount == 1

        return await self._run(op, write=True)

    # -- batch results ------------------------------------------------------------------------
    async def result_put(self, run: str, task: str, body: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO results VALUES (?, ?, ?) ON CONFLICT (run, task) DO UPDATE SET body = excluded.body",
                (run, task, body),
            )

        await self._run(op, write=True)

    async def result_get(self, run: str, task: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT body FROM results WHERE run = ? AND task = ?", (run, task)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op)

    async def result_scan(self, run: str) -> AsyncIterator[tuple[str, str]]:
        after = ""
        while True:

            def page(conn: sqlite3.Connection, after: str = after) -> list[tuple[str, str]]:
                sql = "SELECT task, body FROM results WHERE run = ? AND task > ? ORDER BY task LIMIT ?"
                return [(str(t), str(b)) for t, b in conn.execute(sql, (run, after, _BATCH))]

            rows = await self._run(page)
            for row in rows:
                yield row
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]

    # -- bookkeeping --------------------------------------------------------------------------
    async def count(self, ns: str, name: Literal["corrupt", "evictions"], n: int = 1) -> None:
        await self._run(lambda conn: _bump(conn, ns, name, n), write=True)

    async def stats(self, ns: str, now: float) -> StoreStats:
        def op(conn: sqlite3.Connection) -> StoreStats:
            # Expired entries stay until the next put purges them; they are not counted meanwhile.
            entries, size = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM cache "
                "WHERE ns = ? AND (expires IS NULL OR expires > ?)",
                (ns, now),
            ).fetchone()
            nodes = conn.execute("SELECT COUNT(*) FROM nodes WHERE ns = ?", (ns,)).fetchone()[0]
            results = conn.execute("SELECT COUNT(*) FROM results WHERE run = ?", (ns,)).fetchone()[0]
            counters = dict(conn.execute("SELECT name, value FROM counters WHERE ns = ?", (ns,)).fetchall())
            return StoreStats(
                namespace=ns,
                cache_entries=entries,
                cache_bytes=size,
                nodes=nodes,
                results=results,
                corrupt=counters.get("corrupt", 0),
                evictions=counters.get("evictions", 0),
            )

        return await self._run(op)

    async def clear(self, ns: str, what: ClearWhat) -> int:
        tables, counters = _CLEARED[what]

        def op(conn: sqlite3.Connection) -> int:
            removed = 0
            for table, column in tables:
                removed += conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (ns,)).rowcount
            if counters is None:
                conn.execute("DELETE FROM counters WHERE ns = ?", (ns,))
            elif counters:
                marks = ",".join("?" * len(counters))
                conn.execute(f"DELETE FROM counters WHERE ns = ? AND name IN ({marks})", (ns, *counters))
            return removed

        return await self._run(op, write=True)

    async def namespaces(self) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            sql = (
                "SELECT DISTINCT ns FROM cache UNION SELECT DISTINCT ns FROM nodes UNION SELECT DISTINCT run "
                "FROM results UNION SELECT DISTINCT ns FROM counters WHERE value != 0 ORDER BY 1"
            )
            return [str(r[0]) for r in conn.execute(sql)]

        return await self._run(op)


def _bump(conn: sqlite3.Connection, ns: str, name: str, n: int) -> None:
    if n:
        conn.execute(
            "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (ns, name) DO UPDATE SET value = value + excluded.value",
            (ns, name, n),
        )
