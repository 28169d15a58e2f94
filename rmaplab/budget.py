# SPDX-License-Identifier: GPL-2.0-only
"""Host memory budgeting: refuse a trace or an experiment point that would
not fit this machine's memory, before it runs.

The model keeps its state in numpy arrays and Python objects whose size
follows a few counts (a Footprint): page-table slots (8 bytes per page of
every VMA of every task, so a fork copies its parent's), frames (the frame
table's arrays, grown by doubling), PTEs that map something (the rmap
schemes' per-mapping records; pte_chain keeps one per PTE), and the entries
of the largest snapshot (one dict per page, then its JSON text). The bytes
per unit were measured with benchmarks/host_memory.py (peak RSS, VmHWM, of a
fresh process at 1M and 2M pages, the slope) on Python 3.11, numpy 2, x86_64,
and rounded up:

  ================  ======  ==========================================
  unit              bytes   measured
  ================  ======  ==========================================
  page-table slot   16      8 of page table, copied at fork: 17 per
                            forked page (modern, anonmm)
  frame             120     92-120 per written page (the frame table's
                            arrays, grown by doubling)
  pte_chain entry   128     130 per forked page under pte_chain, over
                            its page-table slot
  snapshot entry    500     438 per page (the dict and its key, the
                            raw page, the JSON written in pieces)
  value read        8       one list slot per page in a read's result
  ================  ======  ==========================================

plus BASE for the interpreter and the imports. An estimate is an upper
bound of what the trace can reach (every page it maps may be touched), not
a prediction; it is compared with ``--max-memory`` when the user gives
one, else with MemAvailable from /proc/meminfo. A refused run says both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .trace import Op

#: Bytes per unit (see the table above).
PTE_SLOT = 16
FRAME = 120
CHAIN = 128
SNAPSHOT = 500
READ = 8
#: The interpreter, numpy, the model's modules and a Machine (37 MiB measured).
BASE = 64 << 20

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class BudgetError(ValueError):
    """A size option that cannot be read (``--max-memory lots``)."""


class OverBudget(ValueError):
    """What would run needs more host memory than it may use."""

    def __init__(self, what: str, estimate: int, limit: int, source: str) -> None:
        self.estimate = estimate
        self.limit = limit
        super().__init__(f"{what} needs about {human(estimate)} of host memory, more than the "
                         f"{human(limit)} {source}; refused before running (a smaller size, "
                         "or --max-memory SIZE if you know it fits)")


def human(n: float) -> str:
    """Bytes as a short binary size: 5.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str | None, option: str = "--max-memory") -> int | None:
    """'2G', '512M', '1.5GiB', '4096' (bytes) as bytes; None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if m is None:
        raise BudgetError(f"{option} {text!r}: expected a size such as 512M, 2G or 1.5GiB")
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size < 1 << 20:
        raise BudgetError(f"{option} {text!r}: at least 1M")
    return size


def available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def limit(max_memory: int | None, share: int = 1) -> tuple[int | None, str]:
    """The bytes a run may use, and how to say where that number comes from:
    the user's max_memory, else this machine's available memory over
    `share` runs at once (a sweep's local workers)."""
    if max_memory is not None:
        return max_memory, "--max-memory allows"
    avail = available()
    if avail is None:
        return None, ""
    if share > 1:
        return avail // share, f"available here for each of {share} workers (MemAvailable)"
    return avail, "available here (MemAvailable)"


@dataclass(slots=True)
class Footprint:
    """The counts the model's memory grows with (see the module's table)."""

    pte_slots: int = 0  # pages of every VMA of every task, at the peak
    frames: int = 0  # frames in use at the peak
    mapped: int = 0  # PTEs mapping a frame, at the peak (pte_chain's entries)
    snapshot: int = 0  # entries of the largest snapshot
    read: int = 0  # values read and kept in results

    def bytes(self, scheme: str | None = None) -> int:
        """The estimate in bytes; scheme None: the most costly scheme."""
        chain = CHAIN if scheme in (None, "pte_chain") else 0
        return (BASE + PTE_SLOT * self.pte_slots + FRAME * self.frames + chain * self.mapped
                + SNAPSHOT * self.snapshot + READ * self.read)


def check(fp: Footprint, what: str, *, scheme: str | None = None,
          max_memory: int | None = None, share: int = 1) -> None:
    """OverBudget when the footprint's estimate exceeds the limit."""
    cap, source = limit(max_memory, share)
    need = fp.bytes(scheme)
    if cap is not None and need > cap:
        raise OverBudget(what, need, cap, source)


@dataclass(slots=True)
class _Task:
    mapped: int = 0  # pages of its VMAs
    touched: int = 0  # pages that may have a PTE (at most mapped)
    written: int = 0  # pages that may map a frame of their own (at most touched)


def trace_footprint(ops: Iterable[Op], *, keep_outputs: bool = False) -> Footprint:
    """An upper bound of a validated trace's footprint, from its ops alone:
    every page an op names may be touched, a fork copies its parent's page
    tables, and a snapshot holds every touched page of every live task.
    keep_outputs: every result and snapshot stays in memory (replay())."""
    tasks: dict[str, _Task] = {}
    fp = Footprint()
    total = _Task()  # the sums over live tasks

    def put(name: str, new: _Task) -> None:
        old = tasks.get(name, _Task())
        new.touched = min(new.touched, new.mapped)
        new.written = min(new.written, new.touched)
        total.mapped += new.mapped - old.mapped
        total.touched += new.touched - old.touched
        total.written += new.written - old.written
        tasks[name] = new

    for op in ops:
        name = op.task or ""
        t = tasks.get(name)
        n = op.pages or 0
        if op.op == "snapshot":
            fp.snapshot = (fp.snapshot + total.touched if keep_outputs
                           else max(fp.snapshot, total.touched))
        elif op.op == "spawn":
            put(name, _Task())
        elif t is None:
            continue
        elif op.op == "fork" and op.child is not None:
            put(op.child, _Task(t.mapped, t.touched, 0))  # frames shared until written
        elif op.op == "exit":
            put(name, _Task())
            del tasks[name]
        elif op.op == "mmap":
            put(name, _Task(t.mapped + n, t.touched, t.written))
        elif op.op == "mremap":
            put(name, _Task(t.mapped + max(0, (op.new_pages or 0) - n), t.touched, t.written))
        elif op.op == "munmap":
            put(name, _Task(max(0, t.mapped - n), t.touched, t.written))
        elif op.op == "read":
            put(name, _Task(t.mapped, t.touched + n, t.written))
            fp.read = fp.read + n if keep_outputs else max(fp.read, n)
        elif op.op in ("write", "mlock"):
            put(name, _Task(t.mapped, t.touched + n, t.written + n))
        fp.pte_slots = max(fp.pte_slots, total.mapped)
        fp.frames = max(fp.frames, total.written)
        fp.mapped = max(fp.mapped, total.touched)
    return fp


def check_trace(ops: Iterable[Op], *, max_memory: int | None = None,
                scheme: str | None = None, keep_outputs: bool = False) -> Footprint:
    """The trace's footprint; OverBudget when its estimate does not fit."""
    fp = trace_footprint(ops, keep_outputs=keep_outputs)
    check(fp, "this trace", scheme=scheme, max_memory=max_memory)
    return fp

