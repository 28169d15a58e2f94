# SPDX-License-Identifier: GPL-2.0-only
"""``rmaplab show``: the rmap structures at a line of a trace, drawn by Graphviz.

The trace is replayed up to and including LINE; then the picture shows each
live task's mm and VMAs, the scheme's own objects (anon_vmas and their
avcs, pte_chains, anonmm bundles, ...) and a few pages: which PTEs map each
one (grey edges from the VMA), what page->mapping points at (orange), and
what a page_referenced walk of it visits: the rmap path from the page
through the scheme's objects to the VMAs, with the VMAs the walk examines
that do not map the page (red, dashed: the wasted part of the walk).

How a scheme's objects are drawn, first that applies:
  1. the scheme's own ``rmap_graph(graph, frames)`` method, given the
     RmapGraph below (node/edge/vma/mm/page);
  2. a drawer here for its structures, found by their shape (anon_vma
     with an avc list: anon_vma_chain, modern; see DRAWERS);
  3. the generic one: every object reachable from page->mapping,
     vma.anon_vma, vma.avcs, vma.rmap, mm.anonmm and mm.rmap, with its
     scalar fields and its references (so a new scheme draws at once).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .consts import PAGE_SHIFT
from .machine import Config, Machine
from .mm_types import MM, PTE_PRESENT, PTE_SHIFT, VM_LOCKED, VMA, flags_to_prot
from .replay import run_op
from .rmap import SCHEMES
from .trace import load_trace

COLORS = {"pte": "#7f7f7f", "mapping": "#ff7f0e", "own": "#2ca02c", "inherited": "#1f77b4",
          "miss": "#d62728", "parent": "#9467bd", "ref": "#555555"}
FILL = {"mm": "#e8e8e8", "vma": "#ffffff", "page": "#fff5cc", "anon": "#dbeaf7",
        "obj": "#eef6e8"}


def _q(text: str) -> str:
    """A dot string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(attrs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_q(v)}" for k, v in attrs.items() if v is not None)


class RmapGraph:
    """The picture being built: nodes keyed by the objects they stand for."""

    def __init__(self, m: Machine, title: str = "") -> None:
        self.m = m
        self.title = title
        self.ids: dict[int, str] = {}
        self.keep: list[object] = []  # keeps keyed objects alive: ids stay unique
        self.pages: dict[int, tuple] = {}  # frame -> its (stable) key object
        self.page_nodes: dict[str, None] = {}  # drawn in one column, after the VMAs
        self.nodes: dict[str, tuple[str, dict, str | None]] = {}
        self.edges: list[tuple[str, str, dict]] = []
        self.clusters: dict[str, str] = {}
        self.notes: list[str] = []
        self.pte_edges = True  # False: the scheme's own pointers are the PTEs (pte_chain)

    def node(self, obj: object, label: str, *, cluster: str | None = None, **attrs: Any) -> str:
        """The node for obj (made once); returns its id."""
        key = id(obj)
        nid = self.ids.get(key)
        if nid is None:
            nid = f"n{len(self.ids)}"
            self.ids[key] = nid
            self.keep.append(obj)
            self.nodes[nid] = (label, attrs, cluster)
        return nid

    def has(self, obj: object) -> bool:
        return id(obj) in self.ids

    def edge(self, a: str, b: str, **attrs: Any) -> None:
        self.edges.append((a, b, attrs))

    def cluster(self, name: str, label: str) -> str:
        self.clusters.setdefault(name, label)
        return name

    # -- the scheme-independent nodes ---------------------------------------------
    def mm(self, mm: MM) -> str:
        """The mm's node (drawn only when a scheme's objects point at it),
        with edges to its VMAs (the mm's VMA tree, what find_vma searches)."""
        if self.has(mm):
            return self.ids[id(mm)]
        owner = mm.owner.name if mm.owner is not None else "?"
        nid = self.node(mm, f"mm #{mm.id} ({owner})", cluster=f"cluster_mm{mm.id}", shape="box",
                        style="filled", fillcolor=FILL["mm"])
        for vma in mm.vmas:
            self.edge(nid, self.vma(vma), color="#bbbbbb", arrowsize="0.5")
        return nid

    def vma(self, vma: VMA) -> str:
        present = int(np.count_nonzero(vma.pt & PTE_PRESENT))
        locked = " locked" if vma.flags & VM_LOCKED else ""
        label = (f"vma {vma.start << PAGE_SHIFT:#x}-{vma.end << PAGE_SHIFT:#x}\n"
                 f"{flags_to_prot(vma.flags)}{locked}, pgoff {vma.pgoff:#x}\n"
                 f"{present}/{vma.npages} pages present")
        return self.node(vma, label, cluster=f"cluster_mm{vma.mm.id}", shape="box",
                         style="filled,rounded", fillcolor=FILL["vma"])

    def page(self, frame: int) -> str:
        ft = self.m.frames
        label = (f"page (frame {frame})\nindex {int(ft.index[frame]):#x}, "
                 f"data {int(ft.data[frame])}\nmapcount {int(ft.mapcount[frame])}")
        key = self.pages.setdefault(frame, ("page", frame))
        nid = self.node(key, label, shape="note", style="filled", fillcolor=FILL["page"])
        self.page_nodes.setdefault(nid, None)
        return nid

    # -- output --------------------------------------------------------------------
    def to_dot(self) -> str:
        out = ["digraph rmap {", "  rankdir=LR; newrank=true; nodesep=0.25; ranksep=0.9;",
               ('  graph [fontname="Helvetica", fontsize=12, labelloc=t, '
                f"label={_q(self.title)}];"),
               '  node [fontname="Helvetica", fontsize=10];',
               '  edge [fontname="Helvetica", fontsize=9];']
        by_cluster: dict[str | None, list[str]] = defaultdict(list)
        for nid, (label, attrs, cluster) in self.nodes.items():
            by_cluster[cluster].append(f"  {nid} [label={_q(label)}, {_attrs(attrs)}];")
        for cluster, lines in by_cluster.items():
            if cluster is None:
                out.extend(lines)
                continue
            out.append(f"  subgraph {cluster} {{")
            out.append(f"    label={_q(self.clusters.get(cluster, cluster))}; style=rounded; "
                       'color="#999999";')
            out.extend("  " + ln for ln in lines)
            out.append("  }")
        if self.page_nodes:
            out.append("  { rank=same; " + "; ".join(self.page_nodes) + "; }")
        for a, b, attrs in self.edges:
            out.append(f"  {a} -> {b} [{_attrs(attrs)}];")
        if self.notes:
            legend = _q("\n".join(self.notes))
            out.append(f"  legend [shape=plaintext, fontsize=9, label={legend}];")
        out.append("}")
        return "\n".join(out) + "\n"


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


# -- scheme drawers --------------------------------------------------------------------------
def _anon_label(av: Any) -> str:
    serial = getattr(av, "serial", "?")
    head = getattr(av, "head", ())
    lines = [f"anon_vma #{serial}", f"{len(head)} avcs on its list"]
    root = getattr(av, "root", av)
    extra = []
    if root is not av:
        extra.append(f"root #{getattr(root, 'serial', '?')}")
    if hasattr(av, "refcount"):
        extra.append(f"refcount {av.refcount}")
    if getattr(av, "num_children", 0) or getattr(av, "num_active_vmas", 0):
        extra.append(f"children {av.num_children}, active vmas {av.num_active_vmas}")
    return "\n".join(lines + extra)


def draw_avc(g: RmapGraph, frames: list[int]) -> None:
    """anon_vma_chain and modern: anon_vmas, their avc lists (in walk order),
    each VMA's own anon_vma, the parent links, and page->mapping."""
    m = g.m
    avs: dict[int, Any] = {}
    for av in getattr(m.rmap, "live", ()):
        avs[id(av)] = av
    for t in m.tasks.values():
        for vma in (t.mm.vmas if t.mm is not None else ()):
            for avc in vma.avcs:
                avs.setdefault(id(avc.anon_vma), avc.anon_vma)
    for av in sorted(avs.values(), key=lambda a: getattr(a, "serial", 0)):
        aid = g.node(av, _anon_label(av), shape="box", style="filled", fillcolor=FILL["anon"])
        for k, avc in enumerate(getattr(av, "head", ()), 1):
            own = avc.vma.anon_vma is av
            g.edge(aid, g.vma(avc.vma), label=f"avc {k}",
                   color=COLORS["own" if own else "inherited"],
                   style="bold" if own else "dashed")
        parent = getattr(av, "parent", av)
        if parent is not av and id(parent) in avs:
            g.edge(aid, g.node(parent, _anon_label(parent)), label="parent",
                   color=COLORS["parent"], style="dotted", constraint="false")
    for f in frames:
        av = m.frames.mapping[f]
        if av is not None and id(av) in avs:
            g.edge(g.page(f), g.ids[id(av)], color=COLORS["mapping"], penwidth="1.5",
                   constraint="false")
    g.notes += ["anon_vma -> vma: avc k = k-th on the anon_vma's list (walk order);",
                "green bold: the VMA's own anon_vma (vma->anon_vma); blue dashed: inherited",
                "at fork (anon_vma_clone); purple dotted: anon_vma->parent"]


SKIP_TYPES = (str, bytes, int, float, bool, type(None), np.ndarray, np.generic)


def _fields(obj: object) -> Iterable[tuple[str, Any]]:
    names: list[str] = []
    for cls in type(obj).__mro__:
        names.extend(getattr(cls, "__slots__", ()))
    names.extend(getattr(obj, "__dict__", {}).keys())
    for n in dict.fromkeys(names):
        if n.startswith("__") or not hasattr(obj, n):
            continue
        yield n, getattr(obj, n)


def draw_generic(g: RmapGraph, frames: list[int], max_nodes: int = 60) -> None:
    """Any scheme: the objects reachable from the rmap roots, by their fields."""
    m = g.m
    count = 0

    def visit(obj: Any, depth: int) -> str | None:
        nonlocal count
        if isinstance(obj, VMA):
            return g.vma(obj) if not obj.dead else None
        if isinstance(obj, MM):
            return g.mm(obj) if not obj.dead else None
        if isinstance(obj, SKIP_TYPES) or obj is m or obj is m.rmap or callable(obj):
            return None
        if g.has(obj):
            return g.ids[id(obj)]
        if count >= max_nodes or depth > 4:
            return None
        count += 1
        scalars, refs = [], []
        for name, val in _fields(obj):
            if isinstance(val, (bool, int, float, str)) and not isinstance(val, np.ndarray):
                scalars.append(f"{name} {val:#x}" if isinstance(val, int) and not
                               isinstance(val, bool) and val > 0xFFFF else f"{name} {val}")
            elif isinstance(val, (list, tuple, set, frozenset, dict)):
                items = list(val.items() if isinstance(val, dict) else val)[:16]
                for k, item in enumerate(items):
                    for part in (item if isinstance(val, dict) else (item,)):
                        refs.append((f"{name}[{k}]", part))
            elif val is not None:
                refs.append((name, val))
        nid = g.node(obj, "\n".join([type(obj).__name__, *scalars[:6]]), shape="box",
                     style="filled", fillcolor=FILL["obj"])
        for name, val in refs:
            to = visit(val, depth + 1)
            if to is not None and to != nid:
                g.edge(nid, to, label=name, color=COLORS["ref"])
        return nid

    for t in m.tasks.values():
        if t.mm is None:
            continue
        for name in ("anonmm", "rmap"):
            to = visit(getattr(t.mm, name, None), 0)
            if to is not None:
                g.edge(g.mm(t.mm), to, label=f"mm->{name}", color=COLORS["ref"])
        for vma in t.mm.vmas:
            for name in ("anon_vma", "avcs", "rmap"):
                val = getattr(vma, name, None)
                for k, item in enumerate(val if isinstance(val, list) else [val]):
                    to = visit(item, 0)
                    if to is not None:
                        g.edge(g.vma(vma), to, color=COLORS["ref"],
                               label=f"vma->{name}" + (f"[{k}]" if isinstance(val, list) else ""))
    for f in frames:
        to = visit(m.frames.mapping[f], 0)
        if to is not None:
            g.edge(g.page(f), to, color=COLORS["mapping"], penwidth="1.5",
                   constraint="false")
    if count >= max_nodes:
        g.notes.append(f"(the first {max_nodes} rmap objects only)")


def draw_anon_vma_2004(g: RmapGraph, frames: list[int]) -> None:
    """anon_vma (2004): one anon_vma per fork family, its list of VMAs."""
    m = g.m
    avs = {id(av): av for av in getattr(m.rmap, "live", ())}
    for t in m.tasks.values():
        for vma in (t.mm.vmas if t.mm is not None else ()):
            if vma.anon_vma is not None:
                avs.setdefault(id(vma.anon_vma), vma.anon_vma)
    for av in sorted(avs.values(), key=lambda a: getattr(a, "serial", 0)):
        aid = g.node(av, f"anon_vma #{getattr(av, 'serial', '?')} (2004)\n"
                     f"{len(av.head)} VMAs on its list", shape="box", style="filled",
                     fillcolor=FILL["anon"])
        for k, vma in enumerate(av.head, 1):
            g.edge(aid, g.vma(vma), label=f"list {k}", color=COLORS["own"])
    for f in frames:
        av = m.frames.mapping[f]
        if av is not None and id(av) in avs:
            g.edge(g.page(f), g.ids[id(av)], color=COLORS["mapping"], penwidth="1.5",
                   constraint="false")
    g.notes += ["anon_vma -> vma: list k = k-th VMA on the anon_vma's list (walk order);",
                "every VMA of the fork family is on it, whether it maps the page or not"]


def draw_pte_chain(g: RmapGraph, frames: list[int]) -> None:
    """pte_chain (2002): each page's direct pointer, or its chain of nodes."""
    m = g.m
    g.pte_edges = False
    direct = getattr(m.rmap, "direct", None)
    for f in frames:
        entries = list(m.rmap.candidates(f, None))
        prev = g.page(f)
        is_direct = direct is not None and f < len(direct) and direct[f] >= 0
        for k, (vma, vpn) in enumerate(entries, 1):
            if vma is None:
                continue
            if is_direct:
                g.edge(prev, g.vma(vma), label=f"pte.direct {vpn << PAGE_SHIFT:#x}",
                       color=COLORS["mapping"])
                continue
            owner = vma.mm.owner.name if vma.mm.owner else "?"
            node = g.node(("pte_chain", f, k), f"pte_chain\n{owner} {vpn << PAGE_SHIFT:#x}",
                          shape="box", style="filled",
                          fillcolor=FILL["obj"], fontsize="9")
            g.edge(prev, node, label="pte.chain" if k == 1 else "next",
                   color=COLORS["mapping" if k == 1 else "inherited"])
            g.edge(node, g.vma(vma), color=COLORS["own"], style="dashed")
            prev = node
    g.notes += ["page -> pte_chain -> ...: the page's chain of PTE pointers, newest first;",
                "green dashed: the PTE each points at (a page mapped once keeps one",
                "direct pointer instead); the walk is the chain: every entry maps the page"]


def draw_anonmm(g: RmapGraph, frames: list[int]) -> None:
    """anonmm (2004): one anonmm per mm, bundled behind the head of its exec."""
    m = g.m
    ams = {id(a): a for a in getattr(m.rmap, "live", ())}
    heads = [a for a in ams.values() if a.head is a]
    for hd in sorted(heads, key=lambda a: getattr(a, "serial", 0)):
        for k, am in enumerate(hd.members, 1):
            gone = am.mm is None
            label = (f"anonmm #{getattr(am, 'serial', '?')}" + (" (head)" if am is hd else "")
                     + f"\ncount {am.count}" + ("\nmm gone" if gone else ""))
            aid = g.node(am, label, shape="box", style="filled,dashed" if gone else "filled",
                         fillcolor=FILL["anon"])
            if am is not hd:
                g.edge(g.ids[id(hd)], aid, label=f"list {k}", color=COLORS["inherited"])
            if not gone and not am.mm.dead:
                g.edge(aid, g.mm(am.mm), label="mm", color=COLORS["own"])
    for f in frames:
        am = m.frames.mapping[f]
        if am is not None and id(am) in ams:
            g.edge(g.page(f), g.ids[id(am)], color=COLORS["mapping"], penwidth="1.5",
                   constraint="false")
    g.notes += ["head -> anonmm: list k = k-th on the bundle's list; a walk starts at the",
                "page's anonmm and goes round the list; in each mm it looks the page up",
                "at page->index (its address: find_vma, grey mm -> vma)"]


def _is_anonmm(m: Machine) -> bool:
    return any(hasattr(a, "members") and hasattr(a, "head") for a in getattr(m.rmap, "live", ()))


def _is_anon_vma_2004(m: Machine) -> bool:
    for av in getattr(m.rmap, "live", ()):
        return isinstance(getattr(av, "head", None), dict) and all(
            isinstance(v, VMA) for v in list(av.head)[:1])
    return False


def _is_pte_chain(m: Machine) -> bool:
    return callable(getattr(m.rmap, "chain", None)) and hasattr(m.rmap, "direct")


def _is_avc_scheme(m: Machine) -> bool:
    for t in m.tasks.values():
        for vma in (t.mm.vmas if t.mm is not None else ()):
            for avc in vma.avcs:
                return hasattr(avc, "anon_vma") and hasattr(avc.anon_vma, "head")
    return hasattr(m.rmap, "live") and getattr(m.rmap, "uses_anon_vma", False) \
        and hasattr(m.rmap, "avc_link")


#: (detector, drawer), first match wins; the generic drawer is the fallback.
DRAWERS: list[tuple[Callable[[Machine], bool], Callable[[RmapGraph, list[int]], None]]] = [
    (_is_avc_scheme, draw_avc),
    (_is_pte_chain, draw_pte_chain),
    (_is_anon_vma_2004, draw_anon_vma_2004),
    (_is_anonmm, draw_anonmm),
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
            g.edge(g.vma(vma), pid, label=f"pte {vpn << PAGE_SHIFT:#x}", color=COLORS["pte"],
                   fontcolor=COLORS["pte"])
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
                g.edge(pid, g.vma(vma), label=f"walk {k}: no pte", color=COLORS["miss"],
                       fontcolor=COLORS["miss"], style="dashed", constraint="false")
    g.notes.insert(0, f"{len(ptes)} mapped pages, {len(frames)} drawn. Orange: page->mapping; "
                   "grey vma -> page: a PTE maps it;\nred dashed: the page's rmap walk visits "
                   "a VMA with no PTE of the page")
    return g


def render(dot_text: str, fmt: str) -> bytes:
    """dot_text as svg or png through Graphviz's dot; FileNotFoundError when
    dot is missing, RuntimeError when it fails. Older dots (2.43) sometimes
    fail to route curved edges: then straighter ones are asked for."""
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError("dot")
    err = ""
    for splines in ("spline", "polyline", "line"):
        args = [exe, f"-T{fmt}", f"-Gsplines={splines}"] + (["-Gdpi=96"] if fmt == "png" else [])
        proc = subprocess.run(args, input=dot_text.encode(), capture_output=True, timeout=120,
                              check=False)
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout
        err = proc.stderr.decode(errors="replace").strip()
    raise RuntimeError(err)


# -- the library call and the command ------------------------------------------------------
FORMATS = ("dot", "svg", "png")


class ShowInputError(ValueError):
    """A bad request to show(): the line, the scheme or the format (named)."""


def show(trace: str | Path | list, *, at: int, scheme: str = "modern", fmt: str = "dot",
         pages: int = 6) -> bytes:
    """The picture of trace (a path, or parsed ops) after its op on line
    `at`, under scheme: dot text, or svg/png bytes rendered by Graphviz.
    Raises TraceError (bad trace), ShowInputError (bad line, scheme or format),
    FileNotFoundError (no dot, for svg/png)."""
    if fmt not in FORMATS:
        raise ShowInputError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ops = load_trace(trace) if isinstance(trace, (str, Path)) else list(trace)
    last = _last_line(trace) if isinstance(trace, (str, Path)) else max((o.line for o in ops),
                                                                        default=0)
    if not 1 <= at <= max(last, 1):
        raise ShowInputError(f"--at {at}: the trace has lines 1 to {last}")
    if scheme not in SCHEMES:
        raise ShowInputError(f"--scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    m = Machine(Config(scheme=scheme))
    done = None
    for op in ops:
        if op.line > at:
            break
        run_op(m, op)
        done = op
    what = f"line {at}" + (f" (after {done.op} on line {done.line})" if done else " (no op yet)")
    name = Path(trace).name if isinstance(trace, (str, Path)) else "trace"
    g = machine_graph(m, title=f"{name} at {what}, scheme {scheme}", pages=pages)
    text = g.to_dot()
    return text.encode() if fmt == "dot" else render(text, fmt)


def _last_line(path: str | Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
