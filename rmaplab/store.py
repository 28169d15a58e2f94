# SPDX-License-Identifier: GPL-2.0-only
"""The results store: one SQLite file (WAL mode) of sweep points.

Tables (docs/sweeps.md has the full schema and example queries):

  points   one row per finished point: experiment, scheme, params (JSON),
           repeat, status ('ok' or 'failed'), metrics (JSON), error,
           wall_s, version (rmaplab on the worker), spec_hash, run_id,
           worker, finished_at, attempts. UNIQUE(experiment, params_key,
           repeat), where params_key is the canonical JSON of the
           parameters including the scheme.
  metrics  (point_id, name, value): every numeric metric of an ok point,
           one row each, for plain SQL (WHERE name = 'listed_avg').
  sweeps   each spec seen: its hash, experiment, normalized JSON, TOML text.
  runs     each `rmaplab sweep` invocation: versions, scheduler, counts.

and one view per experiment, ``results_<name>``, with a column per
parameter and per metric (ok points only).

Only the client process writes, one transaction per point as its result
arrives, so a killed sweep loses no point it had stored, and a point is
written once: an ok row is never replaced; a failed row is replaced only
when the point is run again (``--retry-failed``).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from .sweep_spec import Point, SweepSpec, canonical

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    spec_hash TEXT PRIMARY KEY, experiment TEXT NOT NULL, experiment_ref TEXT NOT NULL,
    spec TEXT NOT NULL, source TEXT NOT NULL, description TEXT NOT NULL,
    first_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, spec_hash TEXT NOT NULL, started_at TEXT NOT NULL,
    ended_at TEXT, version TEXT NOT NULL, python TEXT NOT NULL, platform TEXT NOT NULL,
    libraries TEXT NOT NULL, scheduler TEXT NOT NULL, workers INTEGER,
    done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, outcome TEXT);
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL, params_key TEXT NOT NULL, repeat INTEGER NOT NULL,
    scheme TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    metrics TEXT, error TEXT, wall_s REAL,
    version TEXT NOT NULL, spec_hash TEXT NOT NULL, run_id INTEGER, worker TEXT,
    finished_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
    UNIQUE (experiment, params_key, repeat));
CREATE INDEX IF NOT EXISTS points_by_experiment ON points (experiment, scheme, status);
CREATE TABLE IF NOT EXISTS metrics (
    point_id INTEGER NOT NULL REFERENCES points (id) ON DELETE CASCADE,
    name TEXT NOT NULL, value REAL, PRIMARY KEY (point_id, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics (name, value);
"""


class StoreError(Exception):
    """A results file that cannot be opened or is not an rmaplab store."""


#: Seconds to wait for another process's lock on the file before saying so.
BUSY_TIMEOUT_READ = 2.0
BUSY_TIMEOUT_WRITE = 10.0

#: SQLite's primary result codes that are the file or the machine, not a bug:
#: BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PERM, NOTADB.
_ENVIRONMENT = {5: "is locked by another process (busy)", 6: "is locked (busy)",
                8: "is read-only", 10: "cannot be read or written (I/O error)",
                11: "is damaged (a corrupted page)", 13: "cannot be written: the disk is full",
                14: "cannot be opened", 3: "cannot be opened (permission denied)",
                26: "is not an SQLite database"}


def db_error(path: str, e: sqlite3.Error) -> StoreError | None:
    """A StoreError saying what an SQLite error says about the file or the
    machine (locked, damaged, disk full...), or None for anything else."""
    code = getattr(e, "sqlite_errorcode", None)
    what = _ENVIRONMENT.get(code & 0xFF) if isinstance(code, int) else None
    if what is None:
        return None
    if code is not None and code & 0xFF == 13:
        what += "; every point stored before it is kept"
    return StoreError(f"{path}: the results file {what} ({e})")


def _uri(path: str, mode: str, immutable: bool = False) -> str:
    """An SQLite URI for a file path: every character of the name quoted
    (a name holding '%', '?' or '#' is that file, not a URI's parts)."""
    return Path(path).resolve().as_uri() + f"?mode={mode}" + ("&immutable=1" if immutable else "")


def _unwritable(path: str) -> bool:
    """The file or its directory cannot be written (a read-only mount, say),
    so SQLite could not make the WAL's shared-memory file beside it."""
    p = Path(path).resolve()
    return not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def now() -> str:
    """Local time, ISO 8601 with milliseconds."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _finite(v: Any) -> Any:
    """JSON-safe metric value: numpy scalars as Python, NaN/inf as None."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (TypeError, ValueError):
            v = str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _as_float(v: object) -> float | None:
    """A metric as the metrics table's REAL, or None (text, or an integer
    past a float's range: it stays in the points row's JSON)."""
    if not isinstance(v, (int, float)):  # bools count, as 0 and 1
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _finite(v) for k, v in metrics.items()}


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block ends
    well (removed when it does not): a failed export leaves the old file.
    An OSError names `path` (a full disk says which output it stopped)."""
    out = Path(path)
    if out.exists() and not out.is_file():  # /dev/stdout, a pipe: written in place
        tmp = out
    else:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if tmp != out:
            os.replace(tmp, out)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out)) from None
    finally:
        if tmp != out:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """a and b name one file (or would: the same resolved path)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def json_object(text: object, what: str) -> dict[str, Any]:
    """The JSON object stored in a column, or StoreError naming the column."""
    try:
        obj = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise StoreError(f"{what} is not a JSON object: {str(text)[:60]!r}")
    return obj


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Store:
    """An open results store. Use as a context manager, or call close()."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = str(path)
        self._lock_fd: int | None = None
        memory = self.path == ":memory:"
        if readonly and not memory and not Path(self.path).is_file():
            raise StoreError(f"{self.path}: no such results file")
        if not readonly and not memory and Path(self.path).is_dir():
            raise StoreError(f"{self.path}: is a directory, not a results file")
        if memory:
            target, uri = self.path, False
        elif readonly:
            target, uri = self._readonly_uri(), True
        else:
            target, uri = _uri(self.path, "rwc"), True
        timeout = BUSY_TIMEOUT_READ if readonly else BUSY_TIMEOUT_WRITE
        try:
            self.db = sqlite3.connect(target, uri=uri, timeout=timeout,
                                      isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open ({e})") from None
        self.db.row_factory = sqlite3.Row
        try:
            if not readonly:
                self._refuse_foreign()
                if not memory:
                    self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                (SCHEMA_VERSION,))
            self.db.execute("PRAGMA foreign_keys=ON")
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as e:
            self.db.close()
            known = db_error(self.path, e)
            if known is not None and "not an SQLite" not in str(known):
                raise known from None
            raise StoreError(f"{self.path}: not an rmaplab results file ({e})") from None
        except StoreError:
            self.db.close()
            raise
        if row is None or row[0] != SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"{self.path}: results schema {row[0] if row else None!r}, "
                             f"this rmaplab reads {SCHEMA_VERSION!r}")
        self._view_cols: dict[str, set[str]] = {}

    def _readonly_uri(self) -> str:
        """mode=ro; and where SQLite could not make the WAL's shared-memory
        file (a read-only mount), immutable: nothing else writes it there."""
        if not _unwritable(self.path):
            return _uri(self.path, "ro")
        wal, shm = Path(self.path + "-wal"), Path(self.path + "-shm")
        if not wal.exists() or wal.stat().st_size == 0:
            return _uri(self.path, "ro", immutable=True)
        if shm.exists():  # SQLite reads the log through the shared-memory file
            return _uri(self.path, "ro")
        raise StoreError(f"{self.path}: cannot be read where it is: its write-ahead log "
                         f"({wal.name}, left by a sweep that did not finish) needs a writable "
                         "directory; copy the file and its -wal file to one and report there")

    def _refuse_foreign(self) -> None:
        """Refuse to write into an SQLite file that is neither empty nor ours
        (adding tables to it and switching it to WAL would change someone's data)."""
        names = [str(r[0]) for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")]
        if not names:
            return
        ours = "meta" in names and self.db.execute(
            "SELECT 1 FROM meta WHERE key = 'schema'").fetchone() is not None
        if not ours:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise StoreError(f"{self.path}: an SQLite database that is not an rmaplab results "
                             f"file (it holds {shown}): refusing to add rmaplab's tables to it; "
                             "give a new file")

    def lock_for_sweep(self) -> None:
        """Hold the file for one sweep: a second sweep on it is refused while
        this one runs (both would compute every point). The lock (flock) goes
        with the process, however it ends."""
        if self.path == ":memory:" or self._lock_fd is not None:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path}: another sweep is running on this results file; "
                             "wait for it to finish (then run this one: it runs only what "
                             "is missing) or give another --db") from None
        self._lock_fd = fd

    def close(self) -> None:
        self.db.close()
        if self._lock_fd is not None:  # after SQLite's own locks on the file are gone
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (the sweep's client process only) ------------------------------
    def add_sweep(self, spec: SweepSpec) -> None:
        self.db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (spec.hash, spec.experiment.name, spec.experiment_ref,
                         canonical(spec.normalized()), spec.source, spec.description, now()))

    def start_run(self, spec: SweepSpec, *, version: str, scheduler: str,
                  workers: int | None) -> int:
        libs = {"dask": _version("dask"), "numpy": _version("numpy"),
                "sqlite": sqlite3.sqlite_version}
        cur = self.db.execute(
            "INSERT INTO runs (spec_hash, started_at, version, python, platform, libraries, "
            "scheduler, workers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (spec.hash, now(), version, sys.version.split()[0], platform.platform(),
             json.dumps(libs), scheduler, workers))
        run_id = cur.lastrowid
        assert run_id is not None  # an INSERT sets it
        return run_id

    def end_run(self, run_id: int, *, outcome: str) -> None:
        """Close a run: its outcome, and how many points it stored ok and failed
        (counted from the points themselves, so an interrupt between a commit
        and the caller's own count cannot make them disagree)."""
        db = self.db
        if db.in_transaction:  # an interrupt left record()'s transaction open
            db.execute("ROLLBACK")
        done, failed = db.execute(
            "SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status = 'failed'), 0) "
            "FROM points WHERE run_id = ?", (run_id,)).fetchone()
        db.execute("UPDATE runs SET ended_at = ?, done = ?, failed = ?, outcome = ? "
                   "WHERE id = ?", (now(), done, failed, outcome, run_id))

    def record(self, point: Point, *, ok: bool, metrics: dict[str, Any] | None,
               error: str | None,
               wall_s: float | None, version: str, spec_hash: str, run_id: int | None = None,
               worker: str | None = None) -> bool:
        """Store one finished point in one transaction. Returns False (and
        writes nothing) when the point already has an ok row."""
        metrics = clean_metrics(metrics or {}) if ok else None
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT id, status, attempts FROM points WHERE experiment = ? "
                             "AND params_key = ? AND repeat = ?", point.key).fetchone()
            values = (point.scheme, canonical(point.params), "ok" if ok else "failed",
                      None if metrics is None else json.dumps(metrics), error, wall_s, version,
                      spec_hash, run_id, worker, now())
            if row is None:
                cur = db.execute(
                    "INSERT INTO points (experiment, params_key, repeat, scheme, params, status, "
                    "metrics, error, wall_s, version, spec_hash, run_id, worker, finished_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*point.key, *values))
                rowid = cur.lastrowid
                assert rowid is not None  # an INSERT sets it
                pid = rowid
            elif row["status"] == "failed":
                pid = int(row["id"])
                db.execute("UPDATE points SET scheme = ?, params = ?, status = ?, metrics = ?, "
                           "error = ?, wall_s = ?, version = ?, spec_hash = ?, run_id = ?, "
                           "worker = ?, finished_at = ?, attempts = attempts + 1 WHERE id = ?",
                           (*values, pid))
                db.execute("DELETE FROM metrics WHERE point_id = ?", (pid,))
            else:
                db.execute("ROLLBACK")
                return False
            if metrics:
                db.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                               [(pid, k, x) for k, x in
                                ((k, _as_float(v)) for k, v in metrics.items())
                                if x is not None])
                self._ensure_view(point, metrics)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return True

    def _ensure_view(self, point: Point, metrics: dict[str, Any]) -> None:
        """results_<experiment>: one column per parameter and metric (ok points)."""
        name = point.experiment
        cols = set(point.params) | set(metrics)
        if cols <= self._view_cols.get(name, set()):
            return
        q = ("SELECT DISTINCT j.key FROM points, json_each(points.{0}) AS j "
             "WHERE experiment = ? AND status = 'ok' ORDER BY points.id")
        pcols = [r[0] for r in self.db.execute(q.format("params"), (name,))]
        mcols = [r[0] for r in self.db.execute(q.format("metrics"), (name,))
                 if r[0] not in pcols]
        self._view_cols[name] = set(pcols) | set(mcols)

        def col(src: str, c: str) -> str:
            path = '$."' + c.replace('"', '') + '"'
            return f"json_extract({src}, {_literal(path)}) AS {_ident(c)}"

        items = [col("params", c) for c in pcols] + [col("metrics", c) for c in mcols
                                                      if c not in ("wall_s", "scheme", "repeat")]
        view = _ident("results_" + name)
        self.db.execute(f"DROP VIEW IF EXISTS {view}")
        self.db.execute(f"CREATE VIEW {view} AS SELECT id, scheme, repeat, {', '.join(items)}, "
                        f"wall_s, version, spec_hash FROM points "
                        f"WHERE experiment = {_literal(name)} AND status = 'ok'")

    # -- reading ------------------------------------------------------------------
    def status(self, points: Iterable[Point]) -> dict[tuple[str, str, int], str]:
        """The stored status ('ok'/'failed') of each of these points that has a row."""
        want = {p.key for p in points}
        exps = {k[0] for k in want}
        out = {}
        for exp in exps:
            for r in self.db.execute("SELECT experiment, params_key, repeat, status FROM points "
                                     "WHERE experiment = ?", (exp,)):
                key = (r[0], r[1], r[2])
                if key in want:
                    out[key] = r[3]
        return out

    def experiments(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT experiment FROM points GROUP BY experiment ORDER BY MIN(id)")]

    def records(self, experiment: str | None = None, *,
                status: str | None = "ok") -> list[dict[str, Any]]:
        """One flat dict per stored point: experiment, scheme, the parameters,
        repeat, every metric, wall_s, status, error, version, spec_hash."""
        sql = "SELECT * FROM points"
        where, args = [], []
        if experiment is not None:
            where.append("experiment = ?")
            args.append(experiment)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        out = []
        for r in self.db.execute(sql + " ORDER BY id", args):
            at = f"{self.path}: point {r['id']}"
            rec = {"experiment": r["experiment"], "scheme": r["scheme"],
                   **json_object(r["params"], f"{at}: params"), "repeat": r["repeat"]}
            if r["metrics"]:
                rec.update(json_object(r["metrics"], f"{at}: metrics"))
            rec.update(wall_s=r["wall_s"], status=r["status"], error=r["error"],
                       version=r["version"], spec_hash=r["spec_hash"], finished_at=r["finished_at"],
                       attempts=r["attempts"], worker=r["worker"])
            out.append(rec)
        return out

    def params_of(self, experiment: str) -> list[str]:
        """The parameter names of the experiment's first stored point."""
        row = self.db.execute("SELECT id, params FROM points WHERE experiment = ? "
                              "ORDER BY id LIMIT 1", (experiment,)).fetchone()
        if row is None:
            return []
        return list(json_object(row["params"], f"{self.path}: point {row['id']}: params"))

    def sweeps(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM sweeps ORDER BY first_seen")]

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY id")]

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM points GROUP BY status")}

    # -- export ---------------------------------------------------------------------
    def to_arrow(self, experiment: str | None = None, *, status: str | None = None) -> Any:
        """A pyarrow Table of records() (a column of mixed types becomes text)."""
        return records_to_arrow(self.records(experiment, status=status))

    def export_parquet(self, path: str | Path, **kw: Any) -> int:
        import pyarrow.parquet as pq

        table = self.to_arrow(**kw)
        with replacing(path) as tmp:
            pq.write_table(table, str(tmp))
        return int(table.num_rows)

    def export_csv(self, path: str | Path, **kw: Any) -> int:
        recs = self.records(**{"status": None, **kw})
        cols = list(dict.fromkeys(k for r in recs for k in r))
        with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(recs)
        return len(recs)


def records_to_arrow(records: list[dict[str, Any]]) -> Any:
    """Records (dicts) as a pyarrow Table, one column per key."""
    import pyarrow as pa

    cols = list(dict.fromkeys(k for r in records for k in r))
    arrays = {}
    for c in cols:
        vals = [r.get(c) for r in records]
        try:
            arrays[c] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else str(v) for v in vals], pa.string())
    return pa.table(arrays) if arrays else pa.table({})
