# SPDX-License-Identifier: GPL-2.0-only
"""Running a sweep's points on Dask distributed into a results store.

run_sweep() is the library call behind ``rmaplab sweep``: it reads which
points of the spec the store already holds, runs the others on a Dask
cluster (a LocalCluster of worker processes on 127.0.0.1 by default, or the
scheduler at an address, or ``"inline"``: in this process, no Dask), and
stores each result in its own transaction as it arrives, so a sweep killed
at any moment keeps every point it stored, and running it again runs only
what is missing. A point that raised is stored as failed with its error and
run again only with retry_failed.

Points are submitted only as fast as the workers take them (one per worker
thread in flight): what is submitted is what is running, the progress bar
says so, and an interrupted sweep throws away at most one point per thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import __version__
from .experiments import Experiment
from .store import Store, records_to_arrow
from .sweep_spec import Point, SweepSpec, load_spec, parse_spec, resolve_experiment

INLINE = "inline"


class SweepUnavailable(Exception):
    """The cluster cannot be started or reached."""


class SweepOptionError(ValueError):
    """An option of the sweep that cannot be honoured here (too many workers)."""


#: A LocalCluster may have at most this many worker processes per CPU.
WORKERS_PER_CPU = 4


def check_workers(workers: int | None) -> None:
    """Refuse a local cluster of more workers than this machine can hold."""
    cpus = os.cpu_count() or 1
    if workers is not None and not 1 <= workers <= WORKERS_PER_CPU * cpus:
        raise SweepOptionError(
            f"--workers {workers}: a local cluster here takes 1 to {WORKERS_PER_CPU * cpus} "
            f"worker processes ({WORKERS_PER_CPU} per CPU, {cpus} CPUs); for more, start a "
            "Dask cluster and give its --scheduler address")


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a sweep.

    A BaseException, as KeyboardInterrupt is: the handler raises it wherever
    the main thread is, and no ``except Exception`` on the way (the one that
    turns a dead worker's error into a failed point, say) may swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(slots=True)
class SweepResult:
    """What a sweep did, and every stored record of its points."""

    spec: SweepSpec
    db: str
    total: int = 0
    skipped: int = 0  # already stored (ok, or failed without retry_failed)
    done: int = 0  # run and stored ok now
    failed: int = 0  # run and stored failed now
    failed_before: int = 0  # stored failed earlier and not retried
    wall_s: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.failed_before == 0

    def table(self) -> Any:
        """The records as a pyarrow Table."""
        return records_to_arrow(self.records)


# -- the worker side ----------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _experiment(ref: str, allow_import: bool) -> Experiment:
    """The experiment of ref, resolved once per worker process."""
    return resolve_experiment(ref, allow_import=allow_import)


def run_point(ref: str, scheme: str, params: dict[str, Any],
              allow_import: bool = False) -> dict[str, Any]:
    """Run one point (on a worker). Never raises for the experiment's own
    errors: they come back as {"ok": False, "error": ...}. allow_import:
    the user trusts ref's module (the spec was accepted with it)."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"version": __version__,
                           "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        exp = _experiment(ref, allow_import)
        metrics = exp.run(scheme, dict(params))
        if not isinstance(metrics, dict):
            raise TypeError(f"{exp.name}.run returned {type(metrics).__name__}, not a dict")
        out.update(ok=True, metrics=metrics)
    except Exception as e:  # noqa: BLE001 - the point failed; the sweep goes on
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        loc = f" [{Path(where.filename).name}:{where.lineno}]" if where else ""
        out.update(ok=False, error=f"{type(e).__name__}: {e}{loc}")
    out["wall_s"] = round(time.perf_counter() - t0, 4)
    return out


# -- executors -------------------------------------------------------------------------
class _Inline:
    """Points one after another in this process (``--scheduler inline``)."""

    nthreads = 1

    def __init__(self) -> None:
        self.description = INLINE

    def run(self, ref: str, allow_import: bool, todo: list[Point],
            on_start: Callable[[int], None]) -> Iterator[tuple[Point, dict[str, Any]]]:
        for p in todo:
            on_start(1)
            yield p, run_point(ref, p.scheme, p.params, allow_import)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT ignored while the local cluster starts its worker processes.

    They inherit the ignored disposition across exec (blocking SIGINT here
    would not do: the workers are spawned from the cluster's event-loop
    thread, and a signal mask is per thread), so a Ctrl-C, which the terminal
    sends to the whole process group, reaches only this process, whose
    handler then shuts the cluster down in order instead of every worker
    printing a traceback. The price: a Ctrl-C during the second or two of
    start-up is ignored, and must be pressed again.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# Run in its own session by _SemaphoreReaper: waits for the sweep to end;
# unless told "done", unlinks the POSIX semaphores named with its prefix.
_REAPER = """
import glob, os, sys
if sys.stdin.buffer.read() != b"done":
    for path in glob.glob("/dev/shm/sem." + sys.argv[1] + "-*"):
        try:
            os.unlink(path)
        except OSError:
            pass
"""


class _SemaphoreReaper:
    """Unlinks the LocalCluster's semaphores if the sweep is killed.

    Dask's nannies start workers with multiprocessing's spawn method, whose
    queues are named POSIX semaphores (/dev/shm/sem.*) that multiprocessing's
    resource tracker unlinks when the sweep ends. Killed as a process group
    (SIGKILL), the tracker dies with the sweep and the files stay. So while
    the cluster lives, semaphores get a name prefix of this process's own,
    and a helper in another session (which outlives the group) unlinks the
    ones left by that prefix when this process's pipe closes without "done".
    """

    def __init__(self) -> None:
        self.prefix = f"mp-rmaplab{os.getpid()}"
        self.config: dict[str, Any] = multiprocessing.current_process()._config  # type: ignore[attr-defined]
        self.old = self.config.get("semprefix")
        self.proc: subprocess.Popen[bytes] | None = None
        with contextlib.suppress(OSError):
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _REAPER, self.prefix], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if self.proc is not None:
            self.config["semprefix"] = "/" + self.prefix

    def close(self) -> None:
        """The cluster is closed: its semaphores are gone the ordinary way."""
        if self.old is not None:
            self.config["semprefix"] = self.old
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"done")
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None


class _Dask:
    """A Dask client, on a LocalCluster we start or a scheduler we are given."""

    def __init__(self, scheduler: Any, workers: int | None) -> None:
        try:
            import distributed
        except ImportError as e:  # pragma: no cover - a dependency
            raise SweepUnavailable(f"dask distributed is not installed ({e}): "
                                   "pip install 'dask[distributed]'") from None
        dist: Any = distributed  # untyped
        self.cluster: Any = None
        self.client: Any = None
        self.own_client = True
        self.reaper: _SemaphoreReaper | None = None
        try:
            if scheduler is None:
                n = workers or max(1, os.cpu_count() or 1)
                self.reaper = _SemaphoreReaper()
                with _sigint_held():
                    self.cluster = dist.LocalCluster(
                        n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                        silence_logs=logging.ERROR,
                        # no dashboard; the scheduler's own HTTP routes on a free
                        # port of 127.0.0.1 only
                        dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
                self.client = dist.Client(self.cluster, set_as_default=False)
                self.description = f"LocalCluster {self.cluster.scheduler_address} ({n} workers)"
            elif isinstance(scheduler, str):
                self.client = dist.Client(scheduler, timeout=15, set_as_default=False)
                self.description = scheduler
            else:  # a distributed.Client the caller holds
                self.client, self.own_client = scheduler, False
                self.description = str(getattr(scheduler, "scheduler", scheduler))
        except (OSError, TimeoutError, ValueError, RuntimeError) as e:
            self.close()
            where = "start a local Dask cluster" if scheduler is None else f"reach {scheduler}"
            raise SweepUnavailable(f"cannot {where}: {type(e).__name__}: {e}") from None

    @property
    def nthreads(self) -> int:
        client = self.client
        assert client is not None  # __init__ sets it or raises
        try:
            return max(1, int(sum(client.nthreads().values())))
        except Exception:  # noqa: BLE001 - a scheduler gone away: keep going with one
            return 1

    def run(self, ref: str, allow_import: bool, todo: list[Point],
            on_start: Callable[[int], None]) -> Iterator[tuple[Point, dict[str, Any]]]:
        import distributed

        dist: Any = distributed  # untyped
        client = self.client
        assert client is not None  # __init__ sets it or raises
        queue = list(reversed(todo))
        which: dict[str, Point] = {}
        ac = dist.as_completed(loop=client.loop)

        def submit(k: int) -> None:
            n = 0
            while queue and n < k:
                p = queue.pop()
                key = f"rmaplab-point-{len(queue)}-{time.time_ns()}"
                fut = client.submit(run_point, ref, p.scheme, p.params, allow_import,
                                    pure=False, key=key)
                which[key] = p  # fut.key is this key
                ac.add(fut)
                n += 1
            if n:
                on_start(n)

        submit(self.nthreads)
        for fut in ac:
            p = which.pop(fut.key)
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a worker died under the point
                res = {"ok": False, "error": f"{type(e).__name__}: {e} (the worker running "
                       "this point died)", "version": __version__, "wall_s": None}
            fut.release()
            yield p, res
            submit(max(1, self.nthreads - ac.count()))

    def close(self) -> None:
        for thing in ((self.client if self.own_client else None), self.cluster):
            if thing is not None:
                with contextlib.suppress(Exception):  # closing on the way out
                    thing.close()
        if self.reaper is not None:
            self.reaper.close()


def _executor(scheduler: Any, workers: int | None) -> _Inline | _Dask:
    if scheduler == INLINE:
        return _Inline()
    return _Dask(scheduler, workers)


# -- the client side --------------------------------------------------------------------
def plan(spec: SweepSpec, store: Store, *, retry_failed: bool = False
         ) -> tuple[list[Point], int, int]:
    """The points to run now, how many are stored (skipped), and how many of
    those are failed ones left alone."""
    points = spec.points()
    have = store.status(points)
    todo = [p for p in points if p.key not in have or (retry_failed and have[p.key] == "failed")]
    failed_left = 0 if retry_failed else sum(1 for s in have.values() if s == "failed")
    return todo, len(points) - len(todo), failed_left


def _signals() -> Callable[[], None]:
    """SIGTERM ends the sweep as SIGINT does; returns the restorer."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers
        old = {}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def run_sweep(spec: SweepSpec | dict[str, Any] | str | os.PathLike[str],
              db: str | os.PathLike[str],
              *, scheduler: Any = None, workers: int | None = None, retry_failed: bool = False,
              progress: bool = True, console: Console | None = None,
              allow_import: bool = False, max_memory: int | None = None) -> SweepResult:
    """Run the points of spec missing from the store db; return the result
    with every stored ok record of the spec's points.

    spec: a SweepSpec, a dict in the TOML's shape, or a SPEC.toml path.
    scheduler: None (a LocalCluster of `workers` processes on 127.0.0.1),
    a scheduler address ("tcp://host:8786"), a distributed.Client, or
    "inline" (this process, no Dask).
    allow_import: the spec may name a "package.module:ATTR" experiment, whose
    module is imported (trusted code; registered experiments need nothing).
    One sweep at a time writes to a store: a second one is refused
    (StoreError) while the first runs. A point that would need more host
    memory than max_memory bytes (default: what the machine has available,
    shared by a local cluster's workers) is refused before any runs
    (budget.OverBudget).
    """
    if isinstance(spec, dict):
        spec = parse_spec(spec, allow_import=allow_import)
    elif not isinstance(spec, SweepSpec):
        spec = load_spec(spec, allow_import=allow_import)
    if scheduler is None:
        check_workers(workers)
    _check_memory(spec, max_memory, scheduler, workers)
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    with Store(db) as store:
        store.lock_for_sweep()
        store.add_sweep(spec)
        todo, skipped, failed_before = plan(spec, store, retry_failed=retry_failed)
        result = SweepResult(spec=spec, db=str(db), total=skipped + len(todo), skipped=skipped,
                             failed_before=failed_before)
        if todo:
            _run(spec, store, todo, result, scheduler, workers, progress, console)
        order = {p.key: i for i, p in enumerate(spec.points())}
        keyed = [((r["experiment"], _params_key(r, spec), r["repeat"]), r)
                 for r in store.records(spec.experiment.name)]
        result.records = [r for k, r in sorted((kr for kr in keyed if kr[0] in order),
                                               key=lambda kr: order[kr[0]])]
    result.wall_s = round(time.perf_counter() - t0, 3)
    return result


def _check_memory(spec: SweepSpec, max_memory: int | None, scheduler: Any,
                  workers: int | None) -> None:
    """Every point within the host memory one may use, or OverBudget. A
    local cluster's workers share this machine; a scheduler's are elsewhere
    (only an explicit max_memory bounds them)."""
    if scheduler is not None and scheduler != INLINE and max_memory is None:
        return
    share = 1 if scheduler == INLINE or max_memory is not None \
        else workers or max(1, os.cpu_count() or 1)
    seen = set()
    for p in spec.points():
        if p.params_key in seen:
            continue
        seen.add(p.params_key)
        why = spec.experiment.memory_problem(p.scheme, p.params, max_memory, share)
        if why is not None:
            raise SweepOptionError(why)


def _params_key(rec: dict[str, Any], spec: SweepSpec) -> str:
    return Point(spec.experiment.name, rec["scheme"], {k: rec.get(k) for k in spec.point_keys()},
                 0).params_key


def _run(spec: SweepSpec, store: Store, todo: list[Point], result: SweepResult, scheduler: Any,
         workers: int | None, progress: bool, console: Console) -> None:
    restore = _signals()
    run_id = None
    outcome = "interrupted"
    ex = None
    try:
        ex = _executor(scheduler, workers)
        run_id = store.start_run(spec, version=__version__, scheduler=ex.description,
                                 workers=ex.nthreads)
        running = 0
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} done"),
                      TextColumn("[cyan]{task.fields[running]} running"),
                      TextColumn("[red]{task.fields[failed]} failed"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                      disable=not progress or not console.is_terminal) as bar:
            task = bar.add_task(f"sweep {spec.experiment.name}", total=result.total,
                                completed=result.skipped, running=0,
                                failed=result.failed_before)

            def started(n: int) -> None:
                nonlocal running
                running += n
                bar.update(task, running=running)

            for point, res in ex.run(spec.experiment_ref, spec.allow_import, todo, started):
                running -= 1
                store.record(point, ok=res["ok"], metrics=res.get("metrics"),
                             error=res.get("error"), wall_s=res.get("wall_s"),
                             version=res.get("version", __version__), spec_hash=spec.hash,
                             run_id=run_id, worker=res.get("worker"))
                if res["ok"]:
                    result.done += 1
                else:
                    result.failed += 1
                bar.update(task, advance=1, running=running,
                           failed=result.failed + result.failed_before)
        outcome = "complete" if result.complete else "failed points"
    finally:
        restore()
        try:
            if run_id is not None:  # fails too on a full disk: the cluster still closes
                store.end_run(run_id, outcome=outcome)
        finally:
            if ex is not None:
                ex.close()
