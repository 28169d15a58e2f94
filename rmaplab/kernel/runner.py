# SPDX-License-Identifier: GPL-2.0-only
"""Running a validated trace on the running kernel: run_on_kernel().

The runner owns everything a run changes on the machine and gives it all
back, in this order, however the run ends (normally, by an error, by SIGINT
or SIGTERM): worker processes are killed and reaped first (so their swap
entries are gone), then the swap area is switched off and its file and
directory deleted, then page-cluster, the CPU affinity, the child-subreaper
flag and the lock are restored.  While that cleanup runs, SIGINT and SIGTERM
are blocked so that a second Ctrl-C cannot cut it short.

Workers (worker.py) are forked from the runner for ``spawn`` and from each
other for ``fork``.  The runner makes itself a child subreaper, so a worker
whose parent task exited is re-parented here and can be reaped; workers
ignore SIGCHLD, so a worker's own exited children never linger as zombies.
Each worker is also watched through a pidfd, which works whether or not it
is the runner's own child, and says when its address space is torn down.

Determinism (docs/trace-format.md): all processes of the run, the runner
included, are pinned to one CPU, the one that services the swap disk's
interrupts (pin.py says how it is found, and what happens when it cannot
be); THP is off in every worker; page-cluster is 0; after a ``pageout`` the
runner waits for writeback to finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

from ..consts import WINDOW_END, WINDOW_START
from ..snapshot import canonical_snapshot
from ..trace import Op, refuse_version2
from .observe import KernelUnavailable, Observer, oom_kills, preflight
from .pin import CpuChoice, choose_cpu
from .swap import (
    LOCK_PATH,
    PageCluster,
    RunLock,
    SwapArea,
    active_swaps,
    choose_swap_dir,
    wait_writeback,
)
from .worker import PR_SET_CHILD_SUBREAPER, WORKER_COMM, Libc, become_worker, recv_msg, send_msg

PR_GET_CHILD_SUBREAPER = 37
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: How long a killed or exiting worker may take to disappear.
EXIT_TIMEOUT = 10.0
#: How long to wait for a worker to die after the OOM killer counted a kill.
OOM_SETTLE = 2.0


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run (after which the run cleaned up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunnerError(RuntimeError):
    """Something the runner cannot explain (a bug, or a worker that vanished)."""


class WorkerDied(RunnerError):
    """A worker's channel closed while the runner was talking to it."""

    def __init__(self, proc: _Proc, text: str) -> None:
        super().__init__(text)
        self.proc = proc


@dataclass(slots=True, eq=False)
class _Proc:
    """One worker process: the task it runs, its pid, pidfd and channel."""

    task: str
    pid: int
    pidfd: int
    chan: socket.socket
    alive: bool = True


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into Interrupted for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    saved = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class KernelRun:
    """One run on the kernel: acquire machine settings, run ops, give them back."""

    def __init__(self, *, cpu: int | None = None, lock_path: str = LOCK_PATH,
                 wait_lock: float = 0.0, need_swap: bool = True) -> None:
        self.cpu = cpu
        #: Which CPU the run is pinned to and why (set on entry).
        self.cpu_choice: CpuChoice | None = None
        self.lock_path = lock_path
        self.wait_lock = wait_lock
        self.need_swap = need_swap
        self.libc = Libc()
        self.procs: dict[str, _Proc] = {}
        self.swap: SwapArea | None = None
        self.observer: Observer | None = None
        self._stack = contextlib.ExitStack()
        # VM_LOCKED only ever comes from an mlock(2) in this run (a fresh
        # worker has an empty window, fork clears VM_LOCKED in the child):
        # until one is issued, snapshots skip the slow smaps read.
        self.mlock_seen = False

    # -- machine settings --------------------------------------------------

    def __enter__(self) -> Self:
        preflight()
        # Waiting for another run's lock may take long: Ctrl-C must work here.
        lock = RunLock(self.lock_path, self.wait_lock)
        with signals_blocked():
            self._stack.callback(lock.release)
            try:
                self._acquire()
            except BaseException:
                self._release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        with signals_blocked():
            self._release()

    def _acquire(self) -> None:
        stack = self._stack
        others = active_swaps()
        if others:
            raise KernelUnavailable("a swap area is active (" + ", ".join(others) + "); kernel "
                                    "runs need a machine without swap: swapoff it first")
        swap_dir = choose_swap_dir() if self.need_swap else None
        self.swap = SwapArea(self.libc, swap_dir)
        self.observer = Observer()
        stack.callback(self.observer.close)
        saved_cpus = os.sched_getaffinity(0)
        self.cpu_choice = self._choose_cpu(swap_dir, saved_cpus)
        self.cpu = self.cpu_choice.cpu
        os.sched_setaffinity(0, {self.cpu})
        stack.callback(os.sched_setaffinity, 0, saved_cpus)
        flag = ctypes.c_int(0)
        self.libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag), 0, 0, 0)
        self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        stack.callback(self.libc.prctl, PR_SET_CHILD_SUBREAPER, flag.value, 0, 0, 0)
        stack.callback(PageCluster().restore)
        stack.callback(self._swap_cleanup)
        # Registered last so it runs first: workers die before the swap goes.
        stack.callback(self._kill_workers)

    def _choose_cpu(self, swap_dir: str | None, allowed: set[int]) -> CpuChoice:
        """The swap disk's interrupt CPU, or the CPU asked for (the test-only override)."""
        if swap_dir is None:
            # No swap in this trace: the CPU matters less, but the rule stays the same.
            with contextlib.suppress(KernelUnavailable):
                swap_dir = choose_swap_dir()
        rule = choose_cpu(swap_dir, allowed)
        if self.cpu is None:
            return rule
        if self.cpu not in allowed:
            raise KernelUnavailable(f"CPU {self.cpu} is not one this process may run on "
                                    f"(allowed: {sorted(allowed)})")
        return CpuChoice(self.cpu, rule.disk, rule.bus_device, rule.irqs,
                         reason=f"asked for (the rule would pick CPU {rule.cpu}: {rule.reason})",
                         fallback=rule.fallback)

    def _release(self) -> None:
        problems: list[str] = []
        self._problems = problems
        self._stack.close()
        if problems:
            raise RunnerError("cleanup incomplete: " + "; ".join(problems))

    def _swap_cleanup(self) -> None:
        if self.swap is not None:
            self._problems.extend(self.swap.cleanup())

    def _kill_workers(self) -> None:
        for proc in self.procs.values():
            if proc.alive:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
        for proc in self.procs.values():
            if proc.alive and not self._wait_gone(proc):
                self._problems.append(f"worker pid {proc.pid} (task {proc.task}) did not exit")
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                os.close(proc.pidfd)
            proc.chan.close()
        self.procs.clear()
        if not self._kill_strays():
            self._problems.append(f"stray worker processes left: {worker_children()}")

    def _kill_strays(self) -> bool:
        """Kill and reap the workers this run never registered (a fork cut
        short), which were re-parented to us, the subreaper, when their
        parent died. True when none is left."""
        known = {p.pid for p in self.procs.values()}
        for _ in range(100):
            strays = [pid for pid in worker_children() if pid not in known]
            if not strays:
                return True
            for pid in strays:
                # Our own unreaped children: their pids cannot be reused yet.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        return False

    def _wait_gone(self, proc: _Proc) -> bool:
        """Wait until ``proc`` has exited (its mm is gone), then reap it if it is ours."""
        poller = select.poll()
        poller.register(proc.pidfd, select.POLLIN)
        if not poller.poll(int(EXIT_TIMEOUT * 1000)):
            return False
        proc.alive = False
        # Our own child (spawned, or re-parented to us as subreaper) is a
        # zombie now; a child of a live worker was reaped by it (SIGCHLD ignored).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, 0)
        return True

    # -- the trace ---------------------------------------------------------

    def run(self, ops: list[Op], on_op: Callable[[], None] | None = None
            ) -> tuple[list[dict], list[dict]]:
        """Every op in turn; on_op() after each (a progress bar)."""
        results: list[dict] = []
        snapshots: list[dict] = []
        self._oom_count = oom_kills()
        for op in ops:
            res: dict[str, Any] = {"line": op.line, "op": op.op}
            res.update(self.do_op_oom(op, snapshots))
            results.append(res)
            if on_op is not None:
                on_op()
        return results, snapshots

    def do_op_oom(self, op: Op, snapshots: list[dict]) -> dict[str, Any]:
        """do_op, reporting a worker the kernel's OOM killer took as the contract says.

        docs/trace-format.md: the op whose task was killed gets {"ok": false,
        "error": "OOM", "killed": task}; an op that completed while another
        task was killed gets "killed": that task ("also_killed" for more, as
        the model does); later ops on it get ESRCH. A worker killed between
        ops is named by the next op. A worker that dies with no OOM kill
        counted is still a RunnerError. /proc/vmstat's oom_kill is machine
        wide: a kill elsewhere costs a wait of up to OOM_SETTLE, nothing more.
        """
        victims: list[str] = []
        before = oom_kills()
        if before != self._oom_count:  # killed between ops
            victims += self._oom_victims(before - self._oom_count, 0.0)
        self._oom_count = before
        try:
            out = self.do_op(op, snapshots)
        except WorkerDied as exc:
            after = oom_kills()
            if after == before:
                raise
            self._oom_count = after
            # the op's own task, or the child a fork had just made (the fork
            # itself completed, as when any other task is the victim)
            out = {"ok": False, "error": "OOM"} if exc.proc.task == op.task else {"ok": True}
            self._bury(exc.proc)
            self._kill_strays()  # a child the dying worker was forking
            victims = [exc.proc.task, *victims, *self._oom_victims(after - before - 1, 0.0)]
        else:
            after = oom_kills()
            self._oom_count = after
            if after != before:
                victims += self._oom_victims(after - before, OOM_SETTLE)
        if victims:
            # as the model does (docs/divergences.md 2): the op's own task
            # first, further victims in "also_killed"
            out["killed"] = victims[0]
            if len(victims) > 1:
                out["also_killed"] = victims[1:]
        return out

    def _oom_victims(self, kills: int, settle: float) -> list[str]:
        """Workers gone after `kills` OOM kills (some may have been another
        process's), waiting up to `settle` seconds for SIGKILLed ones to
        finish exiting; a dead worker found meanwhile is buried either way."""
        found: list[str] = []
        deadline = time.monotonic() + settle
        while True:
            by_fd = {p.pidfd: p for p in self.procs.values() if p.alive}
            poller = select.poll()
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            left = max(0.0, deadline - time.monotonic())
            ready = poller.poll(int(left * 1000)) if by_fd else []
            for fd, _ in ready:
                self._bury(by_fd[fd])
                found.append(by_fd[fd].task)
            if len(found) >= kills or not ready or time.monotonic() >= deadline:
                return found

    def _bury(self, proc: _Proc) -> None:
        """A worker that exited or was killed: reap it and forget its task
        (ESRCH from now on)."""
        if not self._wait_gone(proc):
            raise RunnerError(f"worker pid {proc.pid} (task {proc.task}) did not exit")
        os.close(proc.pidfd)
        proc.chan.close()
        del self.procs[proc.task]

    def do_op(self, op: Op, snapshots: list[dict]) -> dict[str, Any]:
        if op.model_only:
            return {"ok": True, "skipped": True}
        kind = op.op
        if kind == "spawn":
            assert op.task is not None
            self._spawn(op.task)
            return {"ok": True}
        if kind == "swapon":
            assert self.swap is not None and op.pages is not None
            err = self.swap.on(op.pages)
            return {"ok": True} if err is None else {"ok": False, "error": err}
        if kind == "swapoff":
            assert self.swap is not None
            err = self.swap.off()
            return {"ok": True} if err is None else {"ok": False, "error": err}
        if kind == "snapshot":
            snapshots.append(self._snapshot(op.label or ""))
            return {"ok": True}
        proc = self.procs.get(op.task or "")
        if proc is None or not proc.alive:
            return {"ok": False, "error": "ESRCH"}
        if kind == "fork":
            assert op.child is not None
            return self._fork(proc, op.child)
        if kind == "exit":
            self._call(proc, ("exit",))
            self._bury(proc)
            return {"ok": True}
        if kind == "read":
            return self._call(proc, ("access", op.addr, op.pages, None))
        if kind == "write":
            return self._call(proc, ("access", op.addr, op.pages, op.value))
        if kind == "mmap":
            return self._call(proc, ("mmap", op.addr, op.pages, op.prot))
        if kind == "mprotect":
            return self._call(proc, ("mprotect", op.addr, op.pages, op.prot))
        if kind == "mremap":
            return self._call(proc, ("mremap", op.addr, op.pages, op.new_pages, op.new_addr))
        if kind == "mlock":
            self.mlock_seen = True
        if kind in ("munmap", "mlock", "munlock"):
            return self._call(proc, (kind, op.addr, op.pages))
        if kind == "madvise":
            reply = self._call(proc, ("madvise", op.addr, op.pages, op.advice))
            if op.advice == "pageout" and not wait_writeback():
                # Pages just written out sit under writeback; the next op
                # should meet them settled, the same on every run.
                print(f"rmaplab: warning: line {op.line}: writeback still running after "
                      "pageout; this run may not be repeatable", file=sys.stderr)
            return reply
        raise RunnerError(f"line {op.line}: op {kind!r} has no kernel runner")

    def _call(self, proc: _Proc, msg: tuple[Any, ...], fds: list[int] | None = None) -> dict:
        try:
            send_msg(proc.chan, msg, fds)
            reply, extra = recv_msg(proc.chan)
        except (EOFError, ConnectionError) as exc:
            raise WorkerDied(proc, f"the worker of task {proc.task} (pid {proc.pid}) died "
                                   f"unexpectedly during {msg[0]!r}: {exc}") from None
        for fd in extra:
            os.close(fd)
        if "bug" in reply:
            raise RunnerError(f"worker of task {proc.task} refused {msg[0]!r}: {reply['bug']}")
        return reply

    def _register(self, task: str, pid: int, chan: socket.socket) -> _Proc:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise RunnerError(f"worker pid {pid} for task {task} vanished at start") from None
        proc = _Proc(task, pid, pidfd, chan)
        self.procs[task] = proc
        return proc

    def _hello(self, proc: _Proc, fresh: bool) -> None:
        """Check what the worker says of itself before running ops in it."""
        try:
            hello, _ = recv_msg(proc.chan)
        except (EOFError, ConnectionError):
            raise WorkerDied(proc, f"the worker of task {proc.task} died at start") from None
        if hello.get("pid") != proc.pid:
            raise RunnerError(f"worker of task {proc.task}: pid {hello.get('pid')} != {proc.pid}")
        if not hello["thp_disabled"] or hello["cpus"] != [self.cpu]:
            raise RunnerError(f"worker of task {proc.task} is not set up: {hello}")
        if fresh and hello["maps"]:
            raise RunnerError(f"a fresh worker already has mappings in the trace window "
                              f"[{WINDOW_START:#x}, {WINDOW_END:#x}): {hello['maps']}")

    def _spawn(self, task: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        assert self.cpu is not None
        # Block the stop signals across fork: the child must not run the
        # runner's handler before it has installed its own.
        with signals_blocked():
            pid = os.fork()
            if pid == 0:
                become_worker(theirs, self.cpu)  # never returns
            proc = self._register(task, pid, ours)
        theirs.close()
        self._hello(proc, fresh=True)

    def _fork(self, parent: _Proc, child: str) -> dict[str, Any]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Until the child's pid is registered an interrupt would leave it
        # unknown to the cleanup; the handshake is quick, so hold signals.
        with signals_blocked():
            try:
                reply = self._call(parent, ("fork",), [theirs.fileno()])
            except BaseException:
                ours.close()  # the parent died (or we were stopped): no child to talk to
                raise
            finally:
                theirs.close()
            if not reply["ok"]:
                ours.close()
                return reply  # the child name stays dead: later ops on it get ESRCH
            proc = self._register(child, reply.pop("pid"), ours)
        self._hello(proc, fresh=False)
        return reply

    def _snapshot(self, label: str) -> dict:
        assert self.observer is not None
        raw = {name: self.observer.raw_task(p.pid, locked_possible=self.mlock_seen)
               for name, p in self.procs.items() if p.alive}
        return canonical_snapshot(label, raw)


def worker_children(parent: int | None = None) -> list[int]:
    """Pids of worker processes (by comm name) whose parent is ``parent`` (default: us)."""
    parent = os.getpid() if parent is None else parent
    comm = WORKER_COMM.decode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        close = stat.rindex(")")
        if stat[stat.index("(") + 1:close] == comm and int(stat[close + 2:].split()[1]) == parent:
            out.append(int(entry))
    return out


def run_on_kernel(ops: list[Op], *, cpu: int | None = None, lock_path: str = LOCK_PATH,
                  wait_lock: float = 0.0, on_op: Callable[[], None] | None = None,
                  on_pin: Callable[[CpuChoice], None] | None = None
                  ) -> tuple[list[dict], list[dict]]:
    """Run validated ``ops`` in real processes; return (results, snapshots).

    Raises KernelUnavailable when this machine cannot run traces, Interrupted
    on SIGINT/SIGTERM (after cleaning up), RunnerError on anything
    unexplained.  ``wait_lock`` seconds are spent waiting for another run's
    lock before giving up (the contract's default is not to wait).  The run
    is pinned to the CPU that services the swap disk's interrupts (pin.py);
    ``cpu`` overrides that, for tests that show why the rule matters.
    on_pin(choice) is told which CPU and why; without it, a trace with swap
    whose CPU could only be a fallback gets a warning on stderr.
    """
    refuse_version2(ops, "run on the kernel")  # TraceError, before anything runs
    need_swap = any(op.op == "swapon" for op in ops)
    with stop_signals_raise(), KernelRun(cpu=cpu, lock_path=lock_path, wait_lock=wait_lock,
                                         need_swap=need_swap) as run:
        assert run.cpu_choice is not None
        if on_pin is not None:
            on_pin(run.cpu_choice)
        elif need_swap and run.cpu_choice.fallback and cpu is None:
            print(f"rmaplab: warning: pinned to {run.cpu_choice.describe()}", file=sys.stderr)
        return run.run(ops, on_op)
