# SPDX-License-Identifier: GPL-2.0-only
"""Experiment ``aim7``: seed 002's forking server (REFERENCES.md row 1).

A parent maps `pages` pages and writes them, forks `procs` children that all
stay alive, and each child writes the first `cow` fraction of the pages
(copy-on-write). Then, with every child alive, one page_referenced walk of
every present anonymous page measures the rmap cost per page: VMAs (chain
entries, mms) the kernel's walk examines (it stops when it has seen every
mapping) and the ones on the list (what a walk that never stops examines:
the number seed 002's "from O(N) to 2" counts).
"""

from __future__ import annotations

import numpy as np

from ..consts import MAX_PAGES, WINDOW_START
from ..machine import Config, Machine
from ..rmap.core import page_referenced_batch
from .base import Claim, Experiment, Plot, forked_footprint, within_budget


def run(scheme: str, p: dict) -> dict:
    procs, pages, cow = int(p["procs"]), int(p["pages"]), float(p["cow"])
    m = Machine(Config(scheme=scheme))
    m.spawn("parent")
    m.mmap("parent", WINDOW_START, pages, "rw")
    m.write("parent", WINDOW_START, pages, 1)
    for i in range(procs):
        m.fork("parent", f"child{i}")
    written = max(1, round(pages * cow)) if cow > 0 else 0
    for i in range(procs):
        if written:
            m.write(f"child{i}", WINDOW_START, written, 2)
    objects = m.objects()
    rmap_bytes = m.rmap.rmap_bytes()
    before = m.walks.as_dict()
    frames = m.frames.allocated()
    visited = np.zeros(len(frames), np.int64)
    listed = np.zeros(len(frames), np.int64)
    page_referenced_batch(m, frames, visited, listed)
    after = m.walks.as_dict()
    walks = after["count"] - before["count"]
    for i in range(procs):
        m.exit(f"child{i}")
    m.exit("parent")
    return {
        "walks": walks,
        "visited_avg": (after["vmas"] - before["vmas"]) / max(walks, 1),
        "visited_max": int(visited.max()) if len(frames) else 0,
        "listed_avg": (after["listed"] - before["listed"]) / max(walks, 1),
        "listed_max": int(listed.max()) if len(frames) else 0,
        "ptes_avg": (after["ptes"] - before["ptes"]) / max(walks, 1),
        "anon_vmas": objects["anon_vma"], "avcs": objects["anon_vma_chain"],
        "pte_chains": objects["pte_chain"], "anonmms": objects["anonmm"],
        "rmap_bytes_x86_64": rmap_bytes["x86_64"], "rmap_bytes_i386": rmap_bytes["i386"],
    }


def _claim(records: list[dict]) -> str:
    top = max(r["procs"] for r in records)
    parts = [f"{r['scheme']} {r['listed_avg']:.2f} listed / {r['visited_avg']:.2f} visited"
             for r in records if r["procs"] == top]
    return f"at N={top}: " + "; ".join(parts) + " VMAs per walk"


EXPERIMENT = Experiment(
    name="aim7",
    title="AIM7-like forking server: rmap walk cost per page",
    params={"procs": [10, 100, 1000], "pages": [1000], "cow": [1.0]},
    limits={"procs": (1, 1_000_000), "pages": (1, MAX_PAGES), "cow": (0.0, 1.0)},
    check=lambda p: within_budget(p["pages"] * (1 + p["procs"] * p["cow"]),
                                  "procs x pages x cow"),
    footprint=lambda p: forked_footprint(p["pages"], p["procs"], p["cow"]),
    run=run,
    columns=("walks", "visited_avg", "visited_max", "listed_avg", "listed_max", "ptes_avg",
             "anon_vmas", "avcs", "rmap_bytes_x86_64", "wall_s"),
    claims=[Claim(row="1", text="anon_vma_chain cuts the average rmap scan in a fork-heavy "
                                "server 'from O(N) to 2' (1000 children x 1000 COWed pages)",
                  published="O(N) -> 2 VMAs per page (Rik van Riel, seed 002)", ours=_claim)],
    plots=[Plot(x="procs", y="listed_avg", xlabel="children forked (N)",
                ylabel="VMAs listed per page_referenced walk (average)", logx=True, logy=True),
           Plot(x="procs", y="visited_avg", xlabel="children forked (N)",
                ylabel="VMAs the walk examines before it stops (average)", logx=True, logy=True)],
    doc="docs/experiments/aim7.md",
)
