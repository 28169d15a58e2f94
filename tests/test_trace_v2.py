# SPDX-License-Identifier: GPL-2.0-only
"""Parsing and static validation of trace format version 2 (docs/trace-format.md),
and the model's and kernel runner's refusal of it until they implement it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rmaplab.consts import MAX_PAGES, WINDOW_START
from rmaplab.kernel.runner import run_on_kernel
from rmaplab.replay import replay
from rmaplab.trace import (
    Op,
    TraceError,
    first_v2,
    parse_trace_lines,
    read_trace,
    refuse_version2,
    trace_version,
)

A = WINDOW_START
SPAWN = '{"op": "spawn", "task": "a"}'
FILE = '{"op": "file", "name": "lib.so", "pages": 4}'
RMAPLAB = str(Path(sys.executable).with_name("rmaplab"))


def j(**obj: Any) -> str:
    return json.dumps(obj)


def ops(*lines: str) -> list[Op]:
    return parse_trace_lines(list(lines))


def bad(line: str, *, key: str | None, prefix: tuple[str, ...] = (SPAWN, FILE)) -> TraceError:
    with pytest.raises(TraceError) as info:
        parse_trace_lines([*prefix, line])
    e = info.value
    assert (e.line, e.key) == (len(prefix) + 1, key), str(e)
    assert f"line {e.line}" in str(e)
    return e


def mmap(**extra: Any) -> str:
    return j(op="mmap", task="a", addr=A, pages=2, prot="r", **extra)


# -- good lines --------------------------------------------------------------

def test_file_truncate_exec_parse() -> None:
    got = ops(SPAWN, FILE, j(op="file", name="empty", pages=0),
              j(op="truncate", file="lib.so", pages=0),
              j(op="truncate", file="empty", pages=MAX_PAGES), j(op="exec", task="a"))
    assert got[1] == Op(line=2, op="file", name="lib.so", pages=4, v2="op")
    assert got[2].pages == 0
    assert got[3] == Op(line=4, op="truncate", file="lib.so", pages=0, v2="op")
    assert got[4].pages == MAX_PAGES
    assert got[5] == Op(line=6, op="exec", task="a", v2="op")
    assert trace_version(got) == 2


def test_mmap_file_offset_shared_and_rx() -> None:
    got = ops(SPAWN, FILE, mmap(file="lib.so", offset=MAX_PAGES, shared=True),
              mmap(file="lib.so"), mmap(shared=True),
              j(op="mmap", task="a", addr=A, pages=1, prot="rx"),
              j(op="mprotect", task="a", addr=A, pages=1, prot="rx"))
    assert (got[2].file, got[2].offset, got[2].shared, got[2].v2) == ("lib.so", MAX_PAGES,
                                                                      True, "file")
    assert (got[3].file, got[3].offset, got[3].shared) == ("lib.so", None, None)
    assert (got[4].file, got[4].shared, got[4].v2) == (None, True, "shared")
    assert (got[5].prot, got[5].v2) == ("rx", "prot")
    assert (got[6].prot, got[6].v2) == ("rx", "prot")


def test_shared_false_alone_makes_version_2() -> None:
    got = ops(SPAWN, mmap(shared=False))
    assert trace_version(got) == 2
    op = first_v2(got)
    assert op is not None and (op.line, op.v2) == (2, "shared")


def test_version_1_unchanged() -> None:
    lines = [SPAWN, j(op="mmap", task="a", addr=A, pages=2, prot="rw"),
             j(op="write", task="a", addr=A, pages=1, value=3),
             j(op="fork", task="a", child="b"), j(op="snapshot", label="s"),
             j(op="exit", task="b")]
    got = ops(*lines)
    assert trace_version(got) == 1 and first_v2(got) is None
    assert all(op.v2 is None and op.file is None and op.shared is None for op in got)
    assert got[1] == Op(line=2, op="mmap", task="a", addr=A, pages=2, prot="rw")
    refuse_version2(got)  # no error
    stream = read_trace(io.BytesIO("\n".join(lines).encode()))
    assert stream == got


def test_streaming_reader_sees_version_2() -> None:
    got = read_trace(io.BytesIO(f"{SPAWN}\n\n# c\n{FILE}\n".encode()))
    op = first_v2(got)
    assert op is not None and (op.line, op.v2) == (4, "op")


# -- bad lines ---------------------------------------------------------------

@pytest.mark.parametrize(("line", "key"), [
    (j(op="file", pages=1), "name"),
    (j(op="file", name="x"), "pages"),
    (j(op="file", name="x", pages=1, task="a"), "task"),
    (j(op="file", name="x", pages=-1), "pages"),
    (j(op="file", name="x", pages=MAX_PAGES + 1), "pages"),
    (j(op="file", name="x", pages=True), "pages"),
    (j(op="file", name="a/b", pages=1), "name"),
    (j(op="file", name="", pages=1), "name"),
    (j(op="file", name="x" * 65, pages=1), "name"),
    (j(op="file", name=3, pages=1), "name"),
    (j(op="truncate", pages=1), "file"),
    (j(op="truncate", file="lib.so"), "pages"),
    (j(op="truncate", file="lib.so", pages=MAX_PAGES + 1), "pages"),
    (j(op="truncate", file="nope", pages=1), "file"),
    (j(op="truncate", file="bad name", pages=1), "file"),
    (j(op="exec"), "task"),
    (j(op="exec", task="zz"), "task"),
    (j(op="exec", task="a", file="lib.so"), "file"),
    (mmap(file="nope"), "file"),
    (mmap(file=7), "file"),
    (mmap(offset=0), "offset"),
    (mmap(file="lib.so", offset=-1), "offset"),
    (mmap(file="lib.so", offset=MAX_PAGES + 1), "offset"),
    (mmap(file="lib.so", offset="0x0"), "offset"),
    (mmap(shared=1), "shared"),
    (mmap(shared="true"), "shared"),
    (mmap(shared=None), "shared"),
    (j(op="mmap", task="a", addr=A, pages=1, prot="wx"), "prot"),
    (j(op="munmap", task="a", addr=A, pages=1, file="lib.so"), "file"),
    (j(op="read", task="a", addr=A, pages=1, shared=True), "shared"),
])
def test_bad_line_names_line_and_key(line: str, key: str) -> None:
    bad(line, key=key)


def test_file_name_created_once_never_reused() -> None:
    e = bad(FILE, key="name")
    assert "line 2" in e.message
    e = bad(j(op="file", name="lib.so", pages=0),
            key="name", prefix=(SPAWN, FILE, j(op="truncate", file="lib.so", pages=0)))


def test_file_key_must_name_a_file_created_earlier() -> None:
    e = bad(mmap(file="later"), key="file", prefix=(SPAWN,))
    assert '"later"' in e.message
    with pytest.raises(TraceError) as info:
        parse_trace_lines([SPAWN, mmap(file="later"), j(op="file", name="later", pages=1)])
    assert (info.value.line, info.value.key) == (2, "file")


def test_exec_needs_a_live_task() -> None:
    e = bad(j(op="exec", task="a"), key="task", prefix=(SPAWN, j(op="exit", task="a")))
    assert "exited" in e.message
    # exec keeps the task alive under its name.
    ops(SPAWN, j(op="exec", task="a"), j(op="exec", task="a"), j(op="exit", task="a"))


# -- refusal by the model and the kernel runner ------------------------------

def test_replay_refuses_version_2_before_running() -> None:
    with pytest.raises(TraceError) as info:
        replay(ops(SPAWN, FILE, mmap(file="lib.so")))
    assert (info.value.line, info.value.key) == (2, "op")
    assert "version 2 of the trace format (files, shared memory, exec) is not modelled yet" \
        in str(info.value)


def test_kernel_runner_refuses_version_2_before_running() -> None:
    with pytest.raises(TraceError) as info:
        run_on_kernel(ops(SPAWN, mmap(shared=False)), lock_path="/nonexistent/lock")
    assert (info.value.line, info.value.key) == (2, "shared")
    assert "not run on the kernel yet" in str(info.value)


@pytest.mark.parametrize(("line", "key"), [
    (FILE, "op"), (mmap(shared=False), "shared"),
    (j(op="mmap", task="a", addr=A, pages=1, prot="rx"), "prot"),
    (j(op="exec", task="a"), "op"),
])
def test_replay_cli_refuses_with_status_2_and_no_outputs(tmp_path: Path, line: str,
                                                        key: str) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(f"{SPAWN}\n# comment\n{line}\n")
    results, snaps = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    p = subprocess.run([RMAPLAB, "replay", str(trace), "--results", str(results),
                        "--snapshots", str(snaps)], check=False, capture_output=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    err = p.stderr.decode()
    assert f"line 3, key {key!r}" in err
    assert "version 2 of the trace format (files, shared memory, exec) is not modelled yet " \
        "(docs/trace-format.md)" in err
    assert not results.exists() and not snaps.exists()
    assert p.stdout == b""


@pytest.mark.parametrize("verb", ["kernel-run", "kernel-diff"])
def test_kernel_cli_refuses_with_status_2_and_no_outputs(tmp_path: Path, verb: str) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(f"{SPAWN}\n{j(op='exec', task='a')}\n")
    results = tmp_path / "r.jsonl"
    args = [RMAPLAB, verb, str(trace)] + (["--results", str(results)]
                                          if verb == "kernel-run" else [])
    p = subprocess.run(args, check=False, capture_output=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "line 2, key 'op': version 2 of the trace format (files, shared memory, exec) " \
        "is not run on the kernel yet (docs/trace-format.md)" in p.stderr.decode()
    assert not results.exists() and p.stdout == b""
