# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show``: the rmap structures at a line of a trace, drawn by Graphviz.

The trace is replayed up to and including LINE; then the picture shows each
live task's mm and VMAs, the scheme's own objects (anon_vmas and their
avcs, pte_chains, anonmm bundles, ...) and a few pages: which PTEs map each
one (grey edges from the VMA), what page->mapping points at (orange), and
what a page_referenced walk of it visits: the rmap path from the page
through the scheme's objects to the VMAs, with the VMAs the walk examines
that do not map the page (red, dashed: the wasted part of the walk).

Laid out left to right in the order a walk goes: pages, then the scheme's
objects, then the mms and their VMAs. Every edge but the scheme's back
pointers (anon_vma->parent) runs that way, so page->mapping is a short
edge to the next column, and a PTE is drawn from the page to its VMA (the
arrow at the page) from the row of the VMA's node that names the PTE. The
legend is a small table: a swatch of each edge kind drawn and its meaning.

How a scheme's objects are drawn, first that applies:
  1. the scheme's own ``rmap_graph(graph, frames)`` method, given the
     RmapGraph (show_graph.py: node/edge/vma/mm/page/pte);
  2. a drawer in show_drawers.py for its structures, found by their shape
     (anon_vma with an avc list: anon_vma_chain, modern; see DRAWERS);
  3. the generic one: every object reachable from page->mapping,
     vma.anon_vma, vma.avcs, vma.rmap, mm.anonmm and mm.rmap, with its
     scalar fields and its references (so a new scheme draws at once).
"""

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .eras import ERAS, is_era
from .machine import Config, Machine
from .mm_types import PTE_PRESENT, PTE_SHIFT, VMA
from .replay import run_op
from .rmap import SCHEMES, VARIANTS
from .show_drawers import (
    draw_anon_vma_2004,
    draw_anonmm,
    draw_avc,
    draw_generic,
    draw_pte_chain,
    is_anon_vma_2004,
    is_anonmm,
    is_avc_scheme,
    is_pte_chain,
)
from .show_graph import COLORS, MAPPING, RmapGraph, render
from .trace import load_trace


# -- pages ----------------------------------------------------------------------------------
def pte_index(m: Machine) -> dict[int, list[tuple[VMA, int]]]:
    """Every present PTE of a real frame: frame -> [(vma, vpn)]."""
    out: dict[int, list[tuple[VMA, int]]] = defaultdict(list)
    for t in m.tasks.values():
        if t.mm is None:
            continue
        for vma in t.mm.vmas:
            pt = vma.pt
            idx = np.nonzero((pt & PTE_PRESENT) != 0)[0]
            for i, f in zip(idx.tolist(), (pt[idx] >> PTE_SHIFT).tolist()):
                if f:
                    out[int(f)].append((vma, vma.start + i))
    return out


def pick_pages(m: Machine, ptes: dict[int, list], limit: int) -> list[int]:
    """A few pages worth looking at: one per page->mapping object (the most
    shared first), then the most shared of the rest, up to limit."""
    ft = m.frames
    frames = sorted(ptes, key=lambda f: (-len(ptes[f]), f))
    chosen: list[int] = []
    seen: set[int] = set()
    for f in frames:
        key = id(ft.mapping[f])
        if key not in seen:
            seen.add(key)
            chosen.append(f)
    for f in frames:
        if f not in chosen:
            chosen.append(f)
    return sorted(chosen[:limit], key=lambda f: (int(ft.index[f]), f))


DRAWERS: list[tuple[Callable[[Machine], bool], Callable[[RmapGraph, list[int]], None]]] = [
    (is_avc_scheme, draw_avc),
    (is_pte_chain, draw_pte_chain),
    (is_anon_vma_2004, draw_anon_vma_2004),
    (is_anonmm, draw_anonmm),
]


def draw_scheme(g: RmapGraph, frames: list[int]) -> None:
    own = getattr(g.m.rmap, "rmap_graph", None)
    if callable(own):
        own(g, frames)
        return
    for detect, drawer in DRAWERS:
        if detect(g.m):
            drawer(g, frames)
            return
    draw_generic(g, frames)


# -- the whole picture ---------------------------------------------------------------------
def machine_graph(m: Machine, *, title: str = "", pages: int = 6) -> RmapGraph:
    """The picture of a machine: tasks, VMAs, rmap objects, a few pages, walks."""
    g = RmapGraph(m, title)
    for name in sorted(m.tasks):
        t = m.tasks[name]
        if t.mm is None:
            continue
        g.cluster(f"cluster_mm{t.mm.id}", f"task {name} (pid {t.pid}): mm #{t.mm.id}, "
                  f"rss {t.mm.rss}, swap entries {t.mm.swapents}")
        for vma in t.mm.vmas:
            g.vma(vma)
    ptes = pte_index(m)
    frames = pick_pages(m, ptes, pages)
    for f in frames:
        g.page(f)
    draw_scheme(g, frames)
    for f in frames:
        pid = g.page(f)
        maps = {(id(v), vpn) for v, vpn in ptes[f]}
        for vma, vpn in (ptes[f] if g.pte_edges else ()):
            # drawn page -> vma (arrow back at the page) so that it runs the way the
            # layout does, ending at the row of the VMA's node that names the PTE
            g.edge(pid, g.pte(vma, vpn, f), dir="back", color=COLORS["pte"])
        try:
            walk = list(m.rmap.candidates(f, None))
        except Exception as e:  # noqa: BLE001 - a scheme that cannot walk this page
            g.notes.append(f"frame {f}: no walk ({type(e).__name__}: {e})")
            continue
        hits = sum(1 for v, vpn in walk if (id(v), vpn) in maps)
        label, attrs, cluster = g.nodes[pid]
        g.nodes[pid] = (label + f"\nwalk visits {len(walk)}, {hits} map it", attrs, cluster)
        for k, (vma, vpn) in enumerate(walk, 1):
            if vma is not None and (id(vma), vpn) not in maps and not vma.dead:
                g.edge(pid, g.vma_head(vma), label=f"walk {k}: no pte", color=COLORS["miss"],
                       fontcolor=COLORS["miss"], style="dashed", weight="0")
    # the legend: page->mapping, PTEs and the walk's misses first, where drawn
    scheme_keys = dict(g.keys)
    g.keys.clear()
    if MAPPING in scheme_keys:
        g.key(*scheme_keys.pop(MAPPING), MAPPING)
    if g.pte_edges:
        g.key(COLORS["pte"], "solid", "a PTE maps the page: the VMA's row for it gives "
              "its address")
    if any(a.get("color") == COLORS["miss"] for _, _, a in g.edges):
        g.key(COLORS["miss"], "dashed", "walk k: the page's rmap walk visits a VMA with no "
              "PTE of it")
    g.keys.update(scheme_keys)
    g.notes.insert(0, f"{len(ptes)} mapped pages, {len(frames)} drawn")
    return g


# -- the library call and the command ------------------------------------------------------
FORMATS = ("dot", "svg", "png")


class ShowInputError(ValueError):
    """A bad request to show(): the line, the scheme or the format (named)."""


def picture(trace: str | Path | list, *, at: int, scheme: str = "modern",
            pages: int = 6, era: str = "today") -> RmapGraph:
    """The picture of trace (a path, or parsed ops) after its op on line
    `at`, under scheme (in era: docs/eras.md): an RmapGraph (to_dot(); shown
    in Jupyter as SVG). Raises TraceError (bad trace) and ShowInputError
    (bad line, scheme or era)."""
    ops = load_trace(trace) if isinstance(trace, (str, Path)) else list(trace)
    last = _last_line(trace) if isinstance(trace, (str, Path)) else max((o.line for o in ops),
                                                                        default=0)
    if not 1 <= at <= max(last, 1):
        raise ShowInputError(f"--at {at}: the trace has lines 1 to {last}")
    if scheme not in SCHEMES and scheme not in VARIANTS:
        raise ShowInputError(f"--scheme {scheme!r}: choose one of {', '.join(SCHEMES)} "
                             f"(or a variant buggy on purpose: {', '.join(VARIANTS)})")
    if not is_era(era):
        raise ShowInputError(f"--era {era!r}: choose one of {', '.join(ERAS)}")
    m = Machine(Config(scheme=scheme, era=era))
    done = None
    for op in ops:
        if op.line > at:
            break
        run_op(m, op)
        done = op
    what = f"line {at}" + (f" (after {done.op} on line {done.line})" if done else " (no op yet)")
    name = Path(trace).name if isinstance(trace, (str, Path)) else "trace"
    title = f"{name} at {what}, scheme {scheme}" + (f", era {era}" if era != "today" else "")
    return machine_graph(m, title=title, pages=pages)


def show(trace: str | Path | list, *, at: int, scheme: str = "modern", fmt: str = "dot",
         pages: int = 6, era: str = "today") -> bytes:
    """The picture of trace after its op on line `at`, under scheme: dot
    text, or svg/png bytes rendered by Graphviz. Raises TraceError (bad
    trace), ShowInputError (bad line, scheme or format), FileNotFoundError
    (no dot, for svg/png)."""
    if fmt not in FORMATS:
        raise ShowInputError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    text = picture(trace, at=at, scheme=scheme, pages=pages, era=era).to_dot()
    return text.encode() if fmt == "dot" else render(text, fmt)


def _last_line(path: str | Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
