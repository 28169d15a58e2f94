# SPDX-License-Identifier: GPL-2.0-only
"""The kernel runner: hand-checked traces on the real kernel, the recorded
reference traces, exit statuses, and cleanup (errors, SIGINT, SIGTERM).

Tests that need root and the /proc files skip with the reason otherwise;
the exit-status tests that need neither run everywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmaplab.kernel import cli as kcli
from rmaplab.kernel.runner import KernelRun, RunnerError, run_on_kernel, worker_children
from rmaplab.kernel.swap import LOCK_PATH, PAGE_CLUSTER, SWAP_DIR_PREFIX, active_swaps

from kernel_util import (
    LOCK_WAIT,
    descendants,
    needs_kernel,
    page,
    pages,
    parse,
    proc_stat,
    read_jsonl,
    recorded_traces,
    run,
    vmas,
)

P0 = page(0)
KERNEL_RUN = [sys.executable, "-m", "rmaplab.kernel.cli", "kernel-run"]


def spawn_map(task: str = "a", n: int = 4, prot: str = "rw") -> list[dict]:
    return [{"op": "spawn", "task": task},
            {"op": "mmap", "task": task, "addr": P0, "pages": n, "prot": prot}]


def ops_of(results: list[dict]) -> list[tuple]:
    return [(r["ok"], r.get("error"), r.get("values")) for r in results]


# -- exit statuses that need no kernel ---------------------------------------

def write_trace(tmp_path: Path, lines: list[dict | str]) -> str:
    path = tmp_path / "t.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


def test_invalid_trace_is_status_2_and_runs_nothing(tmp_path, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("an invalid trace must not run")

    monkeypatch.setattr("rmaplab.kernel.runner.run_on_kernel", must_not_run)
    trace = write_trace(tmp_path, spawn_map() + [{"op": "read", "task": "a", "addr": P0,
                                                  "pages": 1, "colour": "red"}])
    out = CliRunner().invoke(kcli.kernel_run_cmd, [trace])
    assert out.exit_code == 2
    assert "line 3" in out.output and "colour" in out.output


def test_not_root_is_status_3_with_reason(tmp_path, monkeypatch):
    monkeypatch.setattr("rmaplab.kernel.observe.os.geteuid", lambda: 1000)
    out = CliRunner().invoke(kcli.kernel_run_cmd, [write_trace(tmp_path, spawn_map())])
    assert out.exit_code == 3
    assert "root" in out.output


def test_bug_is_status_70_and_says_internal_error(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr("rmaplab.kernel.runner.run_on_kernel", broken)
    out = CliRunner().invoke(kcli.kernel_run_cmd, [write_trace(tmp_path, spawn_map())])
    assert out.exit_code == 70
    assert "internal error" in out.output


# -- hand-checked behaviour on the kernel ------------------------------------

@needs_kernel
@pytest.mark.parametrize("trace", recorded_traces(), ids=lambda p: p.stem)
@pytest.mark.usefixtures("no_leftovers")
def test_recorded_trace_replays_identically(trace):
    """tests/traces/*: the kernel still gives the recorded answers (re-record with record.py)."""
    from rmaplab.trace import load_trace
    results, snapshots = run_on_kernel(load_trace(trace), wait_lock=LOCK_WAIT)
    stem = trace.name[: -len(".jsonl")]
    assert results == read_jsonl(trace.with_name(stem + ".results.jsonl"))
    assert snapshots == read_jsonl(trace.with_name(stem + ".snapshots.jsonl"))


@needs_kernel
def test_read_of_never_written_page_is_zero_page():
    results, (snap,) = run(spawn_map() + [
        {"op": "read", "task": "a", "addr": P0, "pages": 2},
        {"op": "snapshot", "label": "s"}])
    assert results[2]["values"] == [0, 0]
    assert pages(snap, "a") == {0: ("zero", None), 1: ("zero", None)}


@needs_kernel
def test_fork_shares_frames_until_a_write_breaks_cow():
    results, (shared, broken) = run(spawn_map() + [
        {"op": "write", "task": "a", "addr": P0, "pages": 2, "value": 5},
        {"op": "fork", "task": "a", "child": "b"},
        {"op": "snapshot", "label": "shared"},
        {"op": "write", "task": "b", "addr": P0, "pages": 1, "value": 6},
        {"op": "read", "task": "a", "addr": P0, "pages": 1},
        {"op": "snapshot", "label": "broken"}])
    assert pages(shared, "a") == pages(shared, "b") == {0: ("f1", 2), 1: ("f2", 2)}
    assert results[6]["values"] == [5]
    a, b = pages(broken, "a"), pages(broken, "b")
    assert a[0][1] == b[0][1] == 1 and a[0][0] != b[0][0]
    assert a[1] == b[1] and a[1][1] == 2


@needs_kernel
def test_dontneed_empties_entries_and_reads_see_zero():
    results, (snap,) = run(spawn_map() + [
        {"op": "write", "task": "a", "addr": P0, "pages": 4, "value": 9},
        {"op": "madvise", "task": "a", "addr": P0, "pages": 3, "advice": "dontneed"},
        {"op": "snapshot", "label": "s"},
        {"op": "read", "task": "a", "addr": P0, "pages": 4}])
    assert list(pages(snap, "a")) == [3]
    assert results[-1]["values"] == [0, 0, 0, 9]


@needs_kernel
def test_faulting_accesses_are_sigsegv_and_stop_at_the_page():
    results, _ = run(spawn_map(n=2) + [
        {"op": "mmap", "task": "a", "addr": page(2), "pages": 1, "prot": "r"},
        {"op": "mmap", "task": "a", "addr": page(3), "pages": 1, "prot": "none"},
        {"op": "write", "task": "a", "addr": P0, "pages": 2, "value": 4},
        {"op": "read", "task": "a", "addr": P0, "pages": 5},      # stops at the prot-none page
        {"op": "write", "task": "a", "addr": page(1), "pages": 2, "value": 5},  # read-only page
        {"op": "read", "task": "a", "addr": page(9), "pages": 1},  # unmapped
        {"op": "read", "task": "a", "addr": P0, "pages": 2}])      # the task lives on
    assert ops_of(results[5:]) == [
        (False, "SIGSEGV", [4, 4, 0]), (False, "SIGSEGV", None), (False, "SIGSEGV", []),
        (True, None, [4, 5])]


@needs_kernel
def test_syscall_errors_are_errno_names():
    results, _ = run(spawn_map() + [
        {"op": "mmap", "task": "a", "addr": page(2), "pages": 4, "prot": "rw"},
        {"op": "mremap", "task": "a", "addr": page(8), "pages": 1, "new_pages": 2,
         "new_addr": page(16)},
        {"op": "mremap", "task": "a", "addr": P0, "pages": 1, "new_pages": 2},
        {"op": "mprotect", "task": "a", "addr": page(3), "pages": 2, "prot": "r"}])
    assert [r.get("error") for r in results[2:]] == ["EEXIST", "EFAULT", "ENOMEM", "ENOMEM"]


@needs_kernel
def test_model_only_ops_are_skipped():
    results, _ = run(spawn_map() + [
        {"op": "madvise", "task": "a", "addr": P0, "pages": 1, "advice": "volatile"},
        {"op": "reclaim", "pages": 3}])
    assert results[2:] == [{"line": 3, "op": "madvise", "ok": True, "skipped": True},
                           {"line": 4, "op": "reclaim", "ok": True, "skipped": True}]


@needs_kernel
def test_mlock_populates_splits_and_is_not_inherited():
    _, (snap,) = run(spawn_map() + [
        {"op": "mlock", "task": "a", "addr": page(1), "pages": 2},
        {"op": "fork", "task": "a", "child": "b"},
        {"op": "snapshot", "label": "s"}])
    assert vmas(snap, "a") == [(0, 1, "rw", False), (1, 3, "rw", True), (3, 4, "rw", False)]
    assert [v[3] for v in vmas(snap, "b")] == [False, False, False]
    assert {n for n, (f, _) in pages(snap, "a").items() if f != "zero"} == {1, 2}


@needs_kernel
@pytest.mark.usefixtures("no_leftovers")
def test_pageout_swaps_exclusive_pages_and_swapoff_brings_them_back():
    results, (out, off) = run([{"op": "swapon", "pages": 8}, {"op": "swapon", "pages": 8}]
                              + spawn_map() + [
        {"op": "write", "task": "a", "addr": P0, "pages": 2, "value": 1},
        {"op": "read", "task": "a", "addr": page(2), "pages": 1},
        {"op": "madvise", "task": "a", "addr": P0, "pages": 4, "advice": "pageout"},
        {"op": "fork", "task": "a", "child": "b"},
        {"op": "snapshot", "label": "out"},
        {"op": "swapoff"}, {"op": "swapoff"},
        {"op": "snapshot", "label": "off"}])
    assert [r.get("error") for r in results[:2]] == [None, "EBUSY"]
    assert results[10]["error"] == "EINVAL"
    assert pages(out, "a") == pages(out, "b") == {0: ("swap", "s1"), 1: ("swap", "s2"),
                                                   2: ("zero", None)}
    assert pages(off, "a") == pages(off, "b") == {0: ("f1", 2), 1: ("f2", 2), 2: ("zero", None)}


@needs_kernel
def test_workers_are_pinned_thp_off_and_start_empty():
    with KernelRun(need_swap=False, wait_lock=LOCK_WAIT) as kr:
        for op in parse(spawn_map() + [{"op": "fork", "task": "a", "child": "b"}]):
            kr.do_op(op, [])
        cpus = set()
        for proc in kr.procs.values():
            status = Path(f"/proc/{proc.pid}/status").read_text()
            assert "THP_enabled:\t0" in status
            cpus.add(next(line for line in status.splitlines()
                          if line.startswith("Cpus_allowed_list")).split()[1])
        assert cpus == {str(kr.cpu)}


# -- cleanup -------------------------------------------------------------------

@pytest.fixture
def no_leftovers():
    """Check that a test leaves no swap area, worker or changed page-cluster behind."""
    before = Path(PAGE_CLUSTER).read_text()
    yield
    assert not [s for s in active_swaps() if SWAP_DIR_PREFIX in s]
    assert not worker_children()
    assert Path(PAGE_CLUSTER).read_text() == before
    for d in ("/var/tmp", "/tmp"):
        assert not [n for n in os.listdir(d) if n.startswith(SWAP_DIR_PREFIX)]


@needs_kernel
@pytest.mark.usefixtures("no_leftovers")
def test_error_mid_run_cleans_up(monkeypatch):
    real = KernelRun.do_op

    def failing(self, op, snaps):
        if op.op == "snapshot":
            raise ValueError("injected")
        return real(self, op, snaps)

    monkeypatch.setattr(KernelRun, "do_op", failing)
    with pytest.raises(ValueError, match="injected"):
        run([{"op": "swapon", "pages": 8}] + spawn_map() + [
            {"op": "write", "task": "a", "addr": P0, "pages": 2, "value": 1},
            {"op": "madvise", "task": "a", "addr": P0, "pages": 2, "advice": "pageout"},
            {"op": "fork", "task": "a", "child": "b"},
            {"op": "snapshot", "label": "boom"}])


def long_trace(path: Path) -> None:
    """A trace that runs for a long while: writes, forks and pageouts with swap on."""
    lines = [{"op": "swapon", "pages": 256}] + spawn_map(n=16)
    parent = "a"
    for i in range(3000):
        lines.append({"op": "write", "task": parent, "addr": P0, "pages": 16, "value": i % 256})
        lines.append({"op": "fork", "task": parent, "child": f"c{i}"})
        lines.append({"op": "madvise", "task": f"c{i}", "addr": P0, "pages": 4,
                      "advice": "pageout"})
        if i % 2:
            lines.append({"op": "exit", "task": parent})
        parent = f"c{i}"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def kernel_run_subprocess(trace: Path, tmp_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rmaplab.kernel.cli", "kernel-run", str(trace),
           "--results", str(tmp_path / "r.jsonl"), "--wait-lock", str(LOCK_WAIT)]
    # A session of its own, so the signal can go to the whole group, as Ctrl-C does.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@needs_kernel
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_leaves_nothing_behind(sig, tmp_path):
    trace = tmp_path / "long.jsonl"
    long_trace(trace)
    cluster = Path(PAGE_CLUSTER).read_text()
    proc = kernel_run_subprocess(trace, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:  # until the run is well under way: swap on, several workers
            ours = [s for s in active_swaps() if SWAP_DIR_PREFIX in s]
            workers = {p: st for p, st in descendants(proc.pid).items()
                       if st[0] == "rmaplab-worker"}
            if ours and len(workers) >= 2:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.05)
        time.sleep(0.3)
        workers.update((p, st) for p, st in descendants(proc.pid).items()
                       if st[0] == "rmaplab-worker")
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err
    # Every worker seen is gone (a pid reused since would have another start time).
    assert all(proc_stat(p) != st for p, st in workers.items())
    assert not [s for s in active_swaps() if SWAP_DIR_PREFIX in s]
    assert not any(os.path.exists(os.path.dirname(s)) for s in ours)
    assert Path(PAGE_CLUSTER).read_text() == cluster


@needs_kernel
def test_another_run_holding_the_lock_is_status_3(tmp_path):
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for any real run to finish first
        trace = write_trace(tmp_path, spawn_map())
        out = subprocess.run([*KERNEL_RUN, trace], check=False,
                             capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert out.returncode == 3
    assert "another kernel run holds" in out.stderr


@needs_kernel
def test_a_foreign_swap_area_is_status_3(tmp_path):
    from rmaplab.kernel.swap import SwapArea
    from rmaplab.kernel.worker import Libc
    area = SwapArea(Libc(), str(tmp_path))  # not in a rmaplab-swap- dir of a run
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # no run may start meanwhile and meet our area
    try:
        assert area.on(4) is None
        os.close(fd)
        fd = -1
        out = subprocess.run([*KERNEL_RUN, write_trace(tmp_path, spawn_map()),
                              "--wait-lock", str(LOCK_WAIT)],
                             check=False, capture_output=True, text=True, timeout=60)
    finally:
        area.cleanup()
        if fd >= 0:
            os.close(fd)
    assert out.returncode == 3
    assert "swap area is active" in out.stderr


@needs_kernel
def test_without_cap_sys_admin_is_status_3(tmp_path):
    if not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("setpriv(1) is needed to drop CAP_SYS_ADMIN")
    out = subprocess.run(check=False, args=["/usr/bin/setpriv", "--inh-caps=-sys_admin",
                                            "--bounding-set=-sys_admin", *KERNEL_RUN,
                          write_trace(tmp_path, spawn_map()), "--wait-lock", str(LOCK_WAIT)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "frame numbers" in out.stderr


@needs_kernel
def test_kernel_run_command_writes_jsonl(tmp_path):
    trace = write_trace(tmp_path, spawn_map() + [{"op": "snapshot", "label": "x"}])
    res, snap = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    out = CliRunner().invoke(kcli.kernel_run_cmd, [trace, "--results", str(res),
                                                   "--snapshots", str(snap)])
    assert out.exit_code == 0, out.output
    assert [r["op"] for r in read_jsonl(res)] == ["spawn", "mmap", "snapshot"]
    assert read_jsonl(snap) == [{"label": "x", "tasks": {"a": {
        "vmas": [{"start": P0, "end": page(4), "prot": "rw", "locked": False}], "pages": {}}}}]


@needs_kernel
def test_ops_on_a_child_whose_fork_failed_get_esrch(monkeypatch):
    real = KernelRun._call

    def fork_fails(self, proc, msg, fds=None):
        if msg[0] == "fork":  # as if the worker's fork(2) had failed
            return {"ok": False, "error": "EAGAIN"}
        return real(self, proc, msg, fds)

    monkeypatch.setattr(KernelRun, "_call", fork_fails)
    results, (snap,) = run(spawn_map() + [
        {"op": "fork", "task": "a", "child": "b"},
        {"op": "write", "task": "b", "addr": P0, "pages": 1, "value": 1},
        {"op": "exit", "task": "b"},
        {"op": "snapshot", "label": "s"}])
    assert [r.get("error") for r in results[2:5]] == ["EAGAIN", "ESRCH", "ESRCH"]
    assert list(snap["tasks"]) == ["a"]


@needs_kernel
def test_runner_error_names_the_task():
    with KernelRun(need_swap=False, wait_lock=LOCK_WAIT) as kr:
        ops = parse(spawn_map())
        for op in ops:
            kr.do_op(op, [])
        os.kill(kr.procs["a"].pid, signal.SIGKILL)
        with pytest.raises(RunnerError, match="task a"):
            kr.do_op(ops[1], [])


MEMCG_V1 = Path("/sys/fs/cgroup/memory")
MEMCG_V2 = Path("/sys/fs/cgroup")


def memory_cgroup(limit: int) -> tuple[Path, Path]:
    """A fresh memory cgroup capped at ``limit`` bytes: (its dir, its procs file)."""
    name = f"rmaplab-oom-test-{os.getpid()}"
    v2_controllers = MEMCG_V2 / "cgroup.controllers"
    if (MEMCG_V1 / "memory.limit_in_bytes").exists():
        cg = MEMCG_V1 / name
        cg.mkdir()
        (cg / "memory.limit_in_bytes").write_text(str(limit))
    elif v2_controllers.exists() and "memory" in v2_controllers.read_text().split():
        cg = MEMCG_V2 / name
        cg.mkdir()
        (cg / "memory.max").write_text(str(limit))
    else:
        pytest.skip("needs a memory cgroup controller (v1 or v2) to make the kernel OOM-kill")
    return cg, cg / "cgroup.procs"


def run_in_memory_cgroup(tmp_path: Path, lines: list[dict], limit: int) -> tuple[list, list]:
    """kernel-run of lines with the whole run in a memory cgroup capped at limit."""
    trace = write_trace(tmp_path, lines)
    cg, procs = memory_cgroup(limit)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "rmaplab.kernel.cli", "kernel-run", trace,
             "--results", str(tmp_path / "r.jsonl"), "--snapshots", str(tmp_path / "s.jsonl"),
             "--wait-lock", str(LOCK_WAIT)],
            capture_output=True, text=True, timeout=300, check=False,
            preexec_fn=lambda: procs.write_text(str(os.getpid())))
    finally:
        for _ in range(50):  # the cgroup empties once its last task is reaped
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert out.returncode == 0, out.stderr
    return read_jsonl(tmp_path / "r.jsonl"), read_jsonl(tmp_path / "s.jsonl")


def mib(n: int) -> int:
    return (n << 20) // 4096


@needs_kernel
def test_a_worker_the_kernel_oom_kills_is_reported_as_the_contract_says(tmp_path):
    """The kernel's OOM killer, not the model's: TRACE_FORMAT.md's OOM result.

    The run goes into a memory cgroup of 256 MiB and task b writes 512 MiB:
    the cgroup's OOM killer takes b (the largest), during b's write. a lives
    on; later ops on b get ESRCH; the snapshot has a only.
    """
    results, snaps = run_in_memory_cgroup(tmp_path, [
        *spawn_map("a", 4), {"op": "write", "task": "a", "addr": P0, "pages": 4, "value": 1},
        *spawn_map("b", mib(512)),
        {"op": "write", "task": "b", "addr": P0, "pages": mib(512), "value": 2},
        {"op": "read", "task": "a", "addr": P0, "pages": 1},
        {"op": "write", "task": "b", "addr": P0, "pages": 1, "value": 3},
        {"op": "snapshot", "label": "after"}], 256 << 20)
    assert results[5] == {"line": 6, "op": "write", "ok": False, "error": "OOM", "killed": "b"}
    assert results[6] == {"line": 7, "op": "read", "ok": True, "values": [1]}
    assert results[7] == {"line": 8, "op": "write", "ok": False, "error": "ESRCH"}
    assert sorted(snaps[0]["tasks"]) == ["a"]


@needs_kernel
def test_an_op_that_makes_the_kernel_kill_another_task_completes(tmp_path):
    """b holds 160 MiB; a's write of 120 MiB overflows the 256 MiB cgroup and
    the OOM killer takes b, the largest: a's write completes, naming b."""
    results, snaps = run_in_memory_cgroup(tmp_path, [
        *spawn_map("b", mib(160)),
        {"op": "write", "task": "b", "addr": P0, "pages": mib(160), "value": 2},
        *spawn_map("a", mib(120)),
        {"op": "write", "task": "a", "addr": P0, "pages": mib(120), "value": 1},
        {"op": "read", "task": "a", "addr": P0, "pages": 1},
        {"op": "snapshot", "label": "after"}], 256 << 20)
    assert results[5] == {"line": 6, "op": "write", "ok": True, "killed": "b"}
    assert results[6] == {"line": 7, "op": "read", "ok": True, "values": [1]}
    assert sorted(snaps[0]["tasks"]) == ["a"]


def test_oom_victims_waits_for_every_kill_counted():
    """Two workers killed by one op, the second slower to exit: both are
    found (the OOM count says how many to wait for), buried, and named."""
    run_ = KernelRun()
    pids = []
    for task, delay in (("a", 0.0), ("b", 0.4)):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # a stand-in worker: exits after `delay`
            time.sleep(delay)
            os._exit(0)
        theirs.close()
        run_._register(task, pid, ours)
        pids.append(pid)
    try:
        assert run_._oom_victims(2, 5.0) == ["a", "b"]
        assert run_.procs == {}
    finally:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
