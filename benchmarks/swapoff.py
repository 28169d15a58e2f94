#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""swapoff's try_to_unuse, 2004 against 2019 (docs/references.md#swapoff-quadratic).

The scenario, per process count N and tree shape:

  1. swapon an area with room for every page (the P shared slots, N x W
     private ones, and slack);
  2. a parent "p" maps P pages rw at 0x100000000000, writes page j with its
     own value, and pages them all out (MADV_PAGEOUT): P slots;
  3. it forks a tree of N children (fork copies the swap entries, so all
     N + 1 mms share those P slots, and each child joins mmlist right after
     its parent);
  4. child i writes W pages of its own (page (i*W + k) mod P, value
     depending on i and k: the write swaps the shared page in and breaks
     COW), then pages them out: N x W private slots, in fork order;
  5. swapoff, timed, with Config.unuse "2004" (Hugh Dickins' 2004
     slot-by-slot search around mmlist) or "2019" (commit b56a2d8af914: one pass over
     each mm's page tables).

Shapes: ``chain`` (each child forks the next: mmlist is p, c0, c1, ... in
the order the private slots were handed out, so the 2004 search for the
next slot starts right before its holder), ``fan`` (p forks every child:
each lands right after p, so mmlist is p, c(N-1), ..., c0, the reverse of
the slot order, and each private slot's search goes most of the way round)
and ``tree`` (breadth-first, fan-out F: in between).

After every swapoff the run is checked: the invariant checker is clean, no
swap entry and no mm on mmlist is left, every page of every task is
present, pages that held one slot share one frame (mapcount = holders),
every value read back is the one written, and both algorithms leave
identical snapshots. The costs printed are the model's counters:
swapoff_ptes (PTEs unuse_pte_range would look at) and swapoff_mms (mms
visited), charged from an index of where each slot's PTEs are (see
rmaplab/swapfile.py), so the 2004 walk is measured at sizes the real one
would take hours on; the wall time is the model's own.

Run: python benchmarks/swapoff.py [--procs 10,100,1000] [--pages P]
                                  [--writes W] [--shapes chain,fan,tree]
                                  [--fanout F] [--profile K]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import pstats
import sys
import time
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table

from rmaplab.experiments.swapoff import area, build, verify

#: Where the parent maps its pages (the trace window's start).
BASE = 0x100000000000
SHAPES = ("chain", "fan", "tree")
UNUSE = ("2004", "2019")

#: docs/references.md#swapoff-quadratic (Vineeth Remanan Pillai, Dec 2018; commit b56a2d8af914):
#: about 6 GB swapped, 8 CPUs, 16 GB. The kernel counted unuse_pte_range
#: calls (one per page table reached, up to 512 PTEs each), the model counts
#: PTEs, so only the ratios compare.
PUBLISHED = {"2004": (1_200_000_000, 8 * 60.0), "2019": (9_000, 3 * 60.0)}


@dataclass(slots=True, kw_only=True)
class Run:
    """What one swapoff measured."""

    shape: str
    procs: int
    unuse: str
    slots: int  # slots in use when swapoff began (all brought back)
    pswpin: int  # of which read from the area (the rest were in the swap cache)
    mms: int
    ptes: int
    t_setup: float
    t_swapoff: float
    snapshot: dict


def run_one(procs: int, pages: int, writes: int, shape: str, unuse: str, fanout: int,
            profile: int = 0) -> Run:
    gc.collect()
    t0 = time.perf_counter()
    m, expect = build(procs, pages, writes, shape, unuse, fanout)
    t1 = time.perf_counter()
    slots = area(m).inuse
    c = m.counters
    before = {k: c[k] for k in ("pswpin", "swapoff_mms", "swapoff_ptes")}
    prof = cProfile.Profile() if profile else None
    t2 = time.perf_counter()
    if prof is not None:
        prof.enable()
    m.swapoff()
    if prof is not None:
        prof.disable()
    t3 = time.perf_counter()
    if prof is not None:
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.sort_stats("tottime").print_stats(profile)
        print(f"--- cProfile of swapoff, {shape} N={procs} unuse={unuse} (own time) ---")
        print(out.getvalue())
    snap = verify(m, expect, pages)
    return Run(shape=shape, procs=procs, unuse=unuse, slots=slots,
               pswpin=c["pswpin"] - before["pswpin"],
               mms=c["swapoff_mms"] - before["swapoff_mms"],
               ptes=c["swapoff_ptes"] - before["swapoff_ptes"],
               t_setup=t1 - t0, t_swapoff=t3 - t2, snapshot=snap)


def fmt_n(x: float) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.2f}G"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}K"
    return f"{x:,.0f}"


def slope(runs: list[Run], i: int, attr: str) -> str:
    """Growth exponent of attr against N from the previous row of the same shape."""
    if i == 0 or runs[i - 1].shape != runs[i].shape:
        return ""
    a, b = runs[i - 1], runs[i]
    va, vb = getattr(a, attr), getattr(b, attr)
    if va <= 0 or vb <= 0 or a.procs == b.procs:
        return ""
    return f"{math.log(vb / va) / math.log(b.procs / a.procs):.2f}"


def table(pairs: list[tuple[Run, Run]], pages: int, writes: int) -> Table:
    t = Table(title=f"swapoff: try_to_unuse 2004 (mmlist order) vs 2019 (b56a2d8af914), "
                    f"P={pages} pages, W={writes} private pages per child",
              show_lines=False)
    Just = Literal["left", "center", "right"]
    cols: list[tuple[str, Just]] = [
        ("shape", "left"), ("N", "right"), ("slots", "right"), ("read in", "right"),
        ("2004 mms", "right"), ("2004 PTEs", "right"), ("exp", "right"), ("2004 s", "right"),
        ("2019 mms", "right"), ("2019 PTEs", "right"), ("exp", "right"), ("2019 s", "right"),
        ("PTEs 2004/2019", "right"), ("time 2004/2019", "right"), ("same end state", "center")]
    for col, just in cols:
        t.add_column(col, justify=just)
    old = [a for a, _ in pairs]
    new = [b for _, b in pairs]
    for i, (a, b) in enumerate(pairs):
        t.add_row(a.shape, str(a.procs), fmt_n(a.slots), fmt_n(a.pswpin),
                  fmt_n(a.mms), fmt_n(a.ptes), slope(old, i, "ptes"), f"{a.t_swapoff:.2f}",
                  fmt_n(b.mms), fmt_n(b.ptes), slope(new, i, "ptes"), f"{b.t_swapoff:.2f}",
                  f"{a.ptes / b.ptes:,.1f}", f"{a.t_swapoff / b.t_swapoff:.1f}",
                  "yes" if a.snapshot == b.snapshot else "NO",
                  end_section=(i + 1 < len(pairs) and pairs[i + 1][0].shape != a.shape))
    (c04, s04), (c19, s19) = PUBLISHED["2004"], PUBLISHED["2019"]
    t.add_section()
    t.add_row("published", "", "~6 GB", "", "", f"{fmt_n(c04)} calls", "", f"{s04:.0f}",
              "", f"{fmt_n(c19)} calls", "", f"{s19:.0f}",
              f"{c04 / c19:,.0f}", f"{s04 / s19:.1f}", "", style="italic")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="10,100,1000",
                    help="comma-separated child counts N (default 10,100,1000)")
    ap.add_argument("--pages", type=int, default=64, help="pages the parent maps (P)")
    ap.add_argument("--writes", type=int, default=4,
                    help="pages each child writes and pages out (W)")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"comma-separated fork-tree shapes from {', '.join(SHAPES)}")
    ap.add_argument("--fanout", type=int, default=8, help="fan-out of the 'tree' shape")
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="profile the 2004 swapoff at the largest N, top K functions")
    args = ap.parse_args(argv)
    procs = sorted(int(x) for x in args.procs.split(","))
    shapes = [s for s in args.shapes.split(",") if s]
    if any(s not in SHAPES for s in shapes) or args.pages < 1 or args.writes < 0 \
            or args.writes > args.pages or args.fanout < 1 or procs[0] < 1:
        ap.error("bad --shapes, --pages, --writes, --fanout or --procs")
    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=150)  # the table needs it; a pipe gets 80 otherwise
    pairs: list[tuple[Run, Run]] = []
    t_start = time.perf_counter()
    for shape in shapes:
        for n in procs:
            runs = {}
            for unuse in UNUSE:
                prof = args.profile if (unuse == "2004" and n == procs[-1]) else 0
                runs[unuse] = run_one(n, args.pages, args.writes, shape, unuse,
                                      args.fanout, prof)
            a, b = runs["2004"], runs["2019"]
            assert a.snapshot == b.snapshot, f"{shape} N={n}: the two swapoffs differ"
            pairs.append((a, b))
            console.print(f"[dim]{shape} N={n}: setup {a.t_setup:.1f}+{b.t_setup:.1f} s, "
                          f"swapoff {a.t_swapoff:.2f} / {b.t_swapoff:.2f} s, checks passed[/dim]")
    console.print(table(pairs, args.pages, args.writes))
    console.print(
        "slots: in use when swapoff began, every one brought back; read in: of those, "
        "read from the area (the rest were already in the swap cache). exp: growth "
        "exponent of PTEs against N since the previous row (1 linear, 2 quadratic). "
        "Costs are the model's counters (swapoff_mms, swapoff_ptes); the published "
        "row counts unuse_pte_range calls (one per page table, up to 512 PTEs), so "
        "compare ratios, not counts. Times: the model's own swapoff (no I/O), and the "
        "published minutes in seconds (I/O included, which is why its time ratio is "
        "small beside its call ratio).")
    console.print(f"[dim]total {time.perf_counter() - t_start:.1f} s[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
