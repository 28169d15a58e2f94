# SPDX-License-Identifier: GPL-2.0-only
"""Running a trace on the model: results, snapshots and stats as records.

replay(ops) builds a Machine, runs every op in order and returns a
ReplayOutput with the results (one per op), snapshots and stats records of
docs/trace-format.md. run_op() runs one op on an existing machine, for callers
that drive a machine step by step (tests, experiments, notebooks).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from .budget import check_trace
from .errors import ModelBug, OomKill, Segv, SysError
from .machine import Config, Machine
from .optional import require_pandas
from .trace import Op, refuse_version2
from .uapi import Stats

if TYPE_CHECKING:
    import pandas

T = TypeVar("T")


#: Items of one JSON object or array written at a time by write_snapshot.
CHUNK = 4096


@dataclass(slots=True)
class ReplayOutput:
    """What replay returns: the result of every op, the snapshots, the stats
    at each snapshot and at the end (docs/trace-format.md), and the machine."""

    results: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    stats: list[Stats] = field(default_factory=list)
    machine: Machine | None = None

    def to_pandas(self, what: Literal["results", "stats"] = "results") -> pandas.DataFrame:
        """The results (one row per op) or the stats (one row per snapshot and
        the end, nested keys flattened as ``walks.count``) as a DataFrame;
        needs the pandas extra."""
        pd = require_pandas("ReplayOutput.to_pandas()")
        if what == "results":
            return pd.DataFrame.from_records(self.results)
        if what == "stats":
            return pd.json_normalize(self.stats)
        raise ValueError(f"to_pandas({what!r}): choose 'results' or 'stats'")


class Writer(Protocol):
    """Anything with write(str): a text file, or the CLI's output."""

    def write(self, text: str, /) -> object: ...


def _write_json(f: Writer, obj: object) -> None:
    """json.dump's text, written in pieces of at most CHUNK items: a big
    object or array is never one string in memory."""
    if isinstance(obj, dict) and len(obj) > CHUNK:
        it = iter(obj.items())
        f.write("{")
        sep = ""
        while batch := dict(itertools.islice(it, CHUNK)):
            f.write(sep + json.dumps(batch)[1:-1])
            sep = ", "
        f.write("}")
    elif isinstance(obj, list) and len(obj) > CHUNK:
        f.write("[")
        for i in range(0, len(obj), CHUNK):
            f.write((", " if i else "") + json.dumps(obj[i:i + CHUNK])[1:-1])
        f.write("]")
    elif (isinstance(obj, dict) and all(isinstance(k, str) for k in obj)
          and any(isinstance(v, (dict, list)) for v in obj.values())):
        f.write("{")
        for i, (k, v) in enumerate(obj.items()):
            f.write((", " if i else "") + json.dumps(k) + ": ")
            _write_json(f, v)
        f.write("}")
    else:
        f.write(json.dumps(obj))


def write_snapshot(f: Writer, snap: dict[str, Any]) -> None:
    """Write one record (a snapshot of millions of pages, say) as one JSON
    line, the text json.dumps gives, streamed in pieces."""
    _write_json(f, snap)
    f.write("\n")


def _req(value: T | None) -> T:
    """A key the op requires: trace validation (OP_KEYS) guarantees it is set."""
    assert value is not None
    return value


def run_op(m: Machine, op: Op) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one op; return its result record and its snapshot (or None)."""
    res: dict[str, Any] = {"line": op.line, "op": op.op, "ok": True}
    snap = None
    m.kills = []
    values: list[int] = []
    try:
        name = op.op
        if name == "spawn":
            m.spawn(_req(op.task))
        elif name == "fork":
            m.fork(_req(op.task), _req(op.child))
        elif name == "exit":
            m.exit(_req(op.task))
        elif name == "mmap":
            m.mmap(_req(op.task), _req(op.addr), _req(op.pages), _req(op.prot))
        elif name == "munmap":
            m.munmap(_req(op.task), _req(op.addr), _req(op.pages))
        elif name == "mprotect":
            m.mprotect(_req(op.task), _req(op.addr), _req(op.pages), _req(op.prot))
        elif name == "mremap":
            m.mremap(_req(op.task), _req(op.addr), _req(op.pages), _req(op.new_pages), op.new_addr)
        elif name == "mlock":
            m.mlock(_req(op.task), _req(op.addr), _req(op.pages))
        elif name == "munlock":
            m.munlock(_req(op.task), _req(op.addr), _req(op.pages))
        elif name == "madvise":
            m.madvise(_req(op.task), _req(op.addr), _req(op.pages), _req(op.advice))
        elif name == "write":
            m.write(_req(op.task), _req(op.addr), _req(op.pages), _req(op.value))
        elif name == "read":
            res["values"] = values
            m.read(_req(op.task), _req(op.addr), _req(op.pages), values)
        elif name == "swapon":
            m.swapon(_req(op.pages))
        elif name == "swapoff":
            m.swapoff()
        elif name == "reclaim":
            m.reclaim(_req(op.pages))
        elif name == "snapshot":
            snap = m.snapshot(_req(op.label))
        else:  # validation makes this unreachable
            raise ModelBug(f"unknown op {name!r}")
    except SysError as e:
        res["ok"] = False
        res["error"] = e.errno
    except Segv:
        res["ok"] = False
        res["error"] = "SIGSEGV"
    except OomKill as e:
        res["ok"] = False
        res["error"] = "OOM"
        res.pop("values", None)
        m.kills.remove(e.args[0])
        m.kills.insert(0, e.args[0])  # the op failed because its own task died
    if m.kills:
        res["killed"] = m.kills[0]
        if len(m.kills) > 1:
            res["also_killed"] = m.kills[1:]
    if m.config.check:
        m.check()
    return res, snap


def replay(ops: Iterable[Op], *, scheme: str = "modern", check: bool = False,
           frames: int | None = None, machine: Machine | None = None,
           max_memory: int | None = None, era: str = "today") -> ReplayOutput:
    """Run a validated trace on a new machine (or the one given); era as
    Config's (docs/eras.md).

    Before anything runs, the host memory the trace needs is estimated
    (rmaplab.budget, every output kept in memory as this returns them) and
    compared with max_memory bytes, or what the machine has available:
    budget.OverBudget when it does not fit."""
    ops = ops if isinstance(ops, Sequence) else list(ops)
    refuse_version2(ops)  # TraceError: version 2 is not modelled yet
    check_trace(ops, max_memory=max_memory, keep_outputs=True)
    if machine is None:
        cfg = Config(scheme=scheme, check=check, era=era)
        if frames is not None:
            cfg.frames = frames
        machine = Machine(cfg)
    out = ReplayOutput(machine=machine)
    for op in ops:
        res, snap = run_op(machine, op)
        out.results.append(res)
        if snap is not None:
            out.snapshots.append(snap)
            out.stats.append(machine.stats(_req(op.label)))
    out.stats.append(machine.stats("end"))
    return out
