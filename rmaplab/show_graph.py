# SPDX-License-Identifier: GPL-2.0-only
"""The picture ``rmaplab show`` draws: RmapGraph, its dot text, and Graphviz.

RmapGraph holds nodes keyed by the objects they stand for, edges, the mm
clusters and the legend (a Graphviz HTML-like table: a swatch per edge kind
and its meaning). A VMA's node lists the PTEs of the pages drawn, one row
(a port) each, so that a PTE's edge leaves from the row that names it. The
layout runs left to right (pages, the scheme's objects, VMAs): see show.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from typing import Any

import numpy as np

from .consts import PAGE_SHIFT
from .machine import Machine
from .mm_types import MM, PTE_PRESENT, VM_LOCKED, VMA, flags_to_prot

COLORS = {"pte": "#7f7f7f", "mapping": "#ff7f0e", "own": "#2ca02c", "inherited": "#1f77b4",
          "miss": "#d62728", "parent": "#9467bd", "ref": "#555555"}
MAPPING = "page->mapping"  # its legend row
FILL = {"mm": "#e8e8e8", "vma": "#ffffff", "page": "#fff5cc", "anon": "#dbeaf7",
        "obj": "#eef6e8"}


def _q(text: str) -> str:
    """A dot string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Text for a Graphviz HTML-like label."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


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
        self.notes: list[str] = []  # remarks: rows of the legend without a swatch
        self.keys: dict[str, tuple[str, str]] = {}  # edge kind: (colour, style) in the legend
        self.pte_edges = True  # False: the scheme's own pointers are the PTEs (pte_chain)
        self.pte_rows: dict[str, dict[int, str]] = {}  # vma node -> vpn -> its row's text

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

    def key(self, color: str, style: str, meaning: str) -> None:
        """A row of the legend: an edge of this colour and style means this."""
        self.keys.setdefault(meaning, (color, style))

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
        nid = self.node(vma, label, cluster=f"cluster_mm{vma.mm.id}", shape="box",
                        style="filled,rounded", fillcolor=FILL["vma"])
        self.pte_rows.setdefault(nid, {})
        return nid


    def pte(self, vma: VMA, vpn: int, frame: int) -> str:
        """The end of an edge at one PTE of vma: a row of the VMA's node that
        gives the PTE's address and the frame it maps (the row's left side)."""
        nid = self.vma(vma)
        self.pte_rows.setdefault(nid, {})[vpn] = f"pte {vpn << PAGE_SHIFT:#x}: frame {frame}"
        return f"{nid}:p{vpn:x}:w"

    def _vma_html(self, label: str, rows: dict[int, str]) -> str:
        """A VMA's label with a row (a port) per drawn PTE, in address order."""
        port = ' PORT="h"'
        head = "".join(f"<TR><TD{port if k == 0 else ''}>{_h(line)}</TD></TR>"
                       for k, line in enumerate(label.split("\n")))
        body = "".join(f'<TR><TD PORT="p{vpn:x}" ALIGN="LEFT" BGCOLOR="#f4f4f4">'
                       f'<FONT COLOR="{COLORS["pte"]}" POINT-SIZE="9">{_h(text)}</FONT></TD></TR>'
                       for vpn, text in sorted(rows.items()))
        return ('<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="1">'
                + head + body + "</TABLE>")

    def vma_head(self, vma: VMA) -> str:
        """The end of an edge at a VMA's first row, from the left: the VMA
        as a whole, not one of its PTEs' rows."""
        return f"{self.vma(vma)}:h:w"

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
            text = (f"<{self._vma_html(label, self.pte_rows[nid])}>" if nid in self.pte_rows
                    else _q(label))
            by_cluster[cluster].append(f"  {nid} [label={text}, {_attrs(attrs)}];")
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
        if self.keys or self.notes:
            out.append(f"  legend [shape=plaintext, margin=0, label=<{self.legend_table()}>];")
            out.append("  { rank=min; legend; }")
        out.append("}")
        return "\n".join(out) + "\n"

    def legend_table(self) -> str:
        """The legend as a Graphviz HTML-like table: swatch | meaning."""
        rows = ['<TR><TD COLSPAN="2"><B>legend</B></TD></TR>']
        for meaning, (color, style) in self.keys.items():
            line = {"dashed": "- - -", "dotted": ". . . ."}.get(style, "———")
            weight = ("<B>", "</B>") if style == "bold" else ("", "")
            rows.append(f'<TR><TD><FONT COLOR="{color}">{weight[0]}{line}&gt;{weight[1]}'
                        f'</FONT></TD><TD ALIGN="LEFT">{_h(meaning)}</TD></TR>')
        for note in self.notes:
            rows.append(f'<TR><TD COLSPAN="2" ALIGN="LEFT">{_h(note)}</TD></TR>')
        return ('<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2" '
                'COLOR="#999999">' + "".join(rows) + "</TABLE>")

    def _repr_svg_(self) -> str:
        """The picture in a Jupyter notebook (needs Graphviz's dot)."""
        return render(self.to_dot(), "svg").decode()


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
