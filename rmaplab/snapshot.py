# SPDX-License-Identifier: GPL-2.0-only
"""Canonical snapshots, shared by the model and the kernel runner.

Both sides hand over raw state with physical identities (a frame number, a
swap slot, or the zero page); canonical_snapshot() renames them in the order
docs/trace-format.md fixes (tasks by sorted name, pages by address): f1, f2, ...
for frames, s1, s2, ... for swap slots, ``zero`` for the shared zero page.
Two snapshots then agree on sharing exactly when their names agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Raw page identity of the shared zero page.
ZERO = "zero"


@dataclass(slots=True)
class RawVma:
    start: int
    end: int
    prot: str  # "rw", "r" or "none"
    locked: bool


@dataclass(slots=True)
class RawPage:
    addr: int
    state: str  # "present" or "swap"
    ident: object  # ZERO, or any hashable physical id (frame number, slot number)
    mapcount: int | None = None  # present, non-zero frames only


@dataclass(slots=True)
class RawTask:
    vmas: list[RawVma] = field(default_factory=list)
    pages: list[RawPage] = field(default_factory=list)


def canonical_snapshot(label: str, tasks: Mapping[str, RawTask]) -> dict:
    """Return the snapshot object of docs/trace-format.md for raw per-task state."""
    frames: dict[object, str] = {}
    slots: dict[object, str] = {}
    out: dict[str, dict] = {}
    for name in sorted(tasks):
        raw = tasks[name]
        vmas = [
            {"start": hex(v.start), "end": hex(v.end), "prot": v.prot, "locked": bool(v.locked)}
            for v in sorted(raw.vmas, key=lambda v: v.start)
        ]
        pages: dict[str, dict] = {}
        for p in sorted(raw.pages, key=lambda p: p.addr):
            if p.state == "swap":
                name_ = slots.setdefault(p.ident, f"s{len(slots) + 1}")
                pages[hex(p.addr)] = {"state": "swap", "frame": name_}
            elif p.ident == ZERO:
                pages[hex(p.addr)] = {"state": "present", "frame": "zero"}
            else:
                name_ = frames.setdefault(p.ident, f"f{len(frames) + 1}")
                pages[hex(p.addr)] = {"state": "present", "frame": name_, "mapcount": p.mapcount}
        out[name] = {"vmas": vmas, "pages": pages}
    return {"label": label, "tasks": out}


def iter_raw_pages(entries: Iterable[tuple[int, str, object, int | None]]) -> list[RawPage]:
    """Convenience: build RawPage records from (addr, state, ident, mapcount) tuples."""
    return [RawPage(a, s, i, m) for a, s, i, m in entries]
