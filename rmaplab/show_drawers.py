# SPDX-License-Identifier: GPL-2.0-only
"""How ``rmaplab show`` draws each scheme's own objects (anon_vmas and their
avcs, the 2004 anon_vma list, pte_chains, anonmm bundles), found by their
shape, and the generic drawer any other scheme gets (its objects' fields)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .consts import PAGE_SHIFT
from .machine import Machine
from .mm_types import MM, VMA
from .show_graph import COLORS, FILL, MAPPING, RmapGraph


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


def _mapping_edges(g: RmapGraph, frames: list[int], drawn: Iterable[int]) -> None:
    """Each page's page->mapping edge, to the scheme object drawn for it."""
    drawn = set(drawn)
    for f in frames:
        obj = g.m.frames.mapping[f]
        if obj is not None and id(obj) in drawn:
            g.edge(g.page(f), g.ids[id(obj)], color=COLORS["mapping"], penwidth="1.5")
            g.key(COLORS["mapping"], "bold", MAPPING)


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
    _mapping_edges(g, frames, avs)
    g.key(COLORS["own"], "bold", "avc k: k-th on the anon_vma's list (walk order), "
          "to the VMA's own anon_vma (vma->anon_vma)")
    g.key(COLORS["inherited"], "dashed", "avc k: one inherited at fork (anon_vma_clone)")
    g.key(COLORS["parent"], "dotted", "anon_vma->parent")


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
            g.edge(g.page(f), to, color=COLORS["mapping"], penwidth="1.5")
            g.key(COLORS["mapping"], "bold", MAPPING)
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
    _mapping_edges(g, frames, avs)
    g.key(COLORS["own"], "solid", "list k: k-th VMA on the anon_vma's list (walk order); "
          "every VMA of the fork family, mapping the page or not")


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
                g.edge(prev, g.pte(vma, vpn, f), label="pte.direct", color=COLORS["mapping"])
                continue
            owner = vma.mm.owner.name if vma.mm.owner else "?"
            node = g.node(("pte_chain", f, k), f"pte_chain\n{owner} {vpn << PAGE_SHIFT:#x}",
                          shape="box", style="filled",
                          fillcolor=FILL["obj"], fontsize="9")
            g.edge(prev, node, label="pte.chain" if k == 1 else "next",
                   color=COLORS["mapping" if k == 1 else "inherited"])
            g.edge(node, g.pte(vma, vpn, f), color=COLORS["own"], style="dashed")
            prev = node
    g.key(COLORS["mapping"], "solid", "pte.chain: the page's chain of PTE pointers "
          "(pte.direct: the one PTE of a page mapped once)")
    g.key(COLORS["inherited"], "solid", "next: the chain's next entry (newest first)")
    g.key(COLORS["own"], "dashed", "the PTE an entry points at: the walk is the chain, "
          "every entry maps the page")


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
    _mapping_edges(g, frames, ams)
    g.key(COLORS["inherited"], "solid", "list k: k-th anonmm on the bundle's list; a walk "
          "starts at the page's anonmm and goes round it")
    g.key(COLORS["own"], "solid", "anonmm->mm")
    g.key("#bbbbbb", "solid", "mm -> vma: the mm's VMA tree; the walk looks up page->index "
          "(find_vma)")


def is_anonmm(m: Machine) -> bool:
    return any(hasattr(a, "members") and hasattr(a, "head") for a in getattr(m.rmap, "live", ()))


def is_anon_vma_2004(m: Machine) -> bool:
    for av in getattr(m.rmap, "live", ()):
        return isinstance(getattr(av, "head", None), dict) and all(
            isinstance(v, VMA) for v in list(av.head)[:1])
    return False


def is_pte_chain(m: Machine) -> bool:
    return callable(getattr(m.rmap, "chain", None)) and hasattr(m.rmap, "direct")


def is_avc_scheme(m: Machine) -> bool:
    for t in m.tasks.values():
        for vma in (t.mm.vmas if t.mm is not None else ()):
            for avc in vma.avcs:
                return hasattr(avc, "anon_vma") and hasattr(avc.anon_vma, "head")
    return hasattr(m.rmap, "live") and getattr(m.rmap, "uses_anon_vma", False) \
        and hasattr(m.rmap, "avc_link")


#: (detector, drawer), first match wins; the generic drawer is the fallback.
