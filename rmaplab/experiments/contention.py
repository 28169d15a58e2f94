# SPDX-License-Identifier: GPL-2.0-only
"""Experiments ``contention`` and ``race``: the lock picture of Rik van Riel's
anon_vma_chain posting (January 2010) and its VM_LOCK_RMAP argument, on the
model (docs/experiments/contention.md, docs/experiments/race.md).

``contention`` runs the AIM7-like forking load (rmaplab.contention.aim7) on
K simulated CPUs for each scheme: throughput in jobs per simulated minute,
the share of CPU time spent spinning on locks (in all and per lock class),
rwsem sleep time, per-class longest hold and queue, and pte_chain's and
anonmm's failed page_table_lock trylocks. ``race`` runs rmap walks at
every step boundary of VMA surgery and counts PTEs that exist but are not
found (rmaplab.contention.race).
"""

from __future__ import annotations

from ..consts import MAX_PAGES
from ..contention.aim7 import Aim7Params, run_aim7
from ..contention.race import run_race
from .base import Claim, Experiment, Plot, within_budget


def run(scheme: str, p: dict) -> dict:
    params = Aim7Params(cpus=int(p["cpus"]), procs=int(p["procs"]), pages=int(p["pages"]),
                        cow=float(p["cow"]), slices=int(p["slices"]),
                        reclaim=int(p["reclaim"]), unmap=float(p["unmap"]),
                        rounds=int(p["rounds"]), seed=int(p["seed"]))
    out: dict[str, object] = dict(run_aim7(scheme, params))
    return out


def _at(records: list[dict], scheme: str) -> dict | None:
    top_n = max(r["procs"] for r in records)
    top_k = max(r["cpus"] for r in records)
    for r in records:
        if r["scheme"] == scheme and r["procs"] == top_n and r["cpus"] == top_k:
            return r
    return None


def _picture(records: list[dict]) -> str:
    parts = []
    for s in ("anon_vma", "anonmm", "anon_vma_chain", "modern", "pte_chain"):
        r = _at(records, s)
        if r is not None:
            parts.append(f"{s}: {100 * r['wait_anon']:.0f}% of CPU time spinning on the anon "
                         f"lock, {r['hot_anon_queue_avg']:.1f} CPUs queued on the hottest on "
                         f"average, walk holds up to {r['hold_max_us_anon']:.0f} us")
    return (f"N={max(x['procs'] for x in records)}, {max(x['cpus'] for x in records)} CPUs: "
            + "; ".join(parts)) if parts else "(no record)"


def _trylock(records: list[dict]) -> str:
    rs = [r for r in records if r["scheme"] in ("pte_chain", "anonmm")]
    if not rs:
        return "(pte_chain and anonmm not run)"
    return "; ".join(f"{r['scheme']} N={r['procs']} K={r['cpus']}: {r['trylock_fail']} failed "
                     f"trylocks, {r['swap_again']} SWAP_AGAIN" for r in rs if r["cpus"] > 1
                     and r["cpus"] == max(x["cpus"] for x in rs))


def _same(records: list[dict]) -> str:
    out = []
    for n in sorted({r["procs"] for r in records}):
        k = max(r["cpus"] for r in records)
        by = {r["scheme"]: r for r in records if r["procs"] == n and r["cpus"] == k}
        if "anonmm" in by and "anon_vma" in by:
            out.append(f"N={n} K={k}: anonmm {by['anonmm']['throughput_jpm']:,.0f} vs anon_vma "
                       f"{by['anon_vma']['throughput_jpm']:,.0f} jobs/min")
    return ("; ".join(out) + " (under reclaim; --param reclaim=0 is 3c's no-pressure case)") \
        if out else "(anonmm and anon_vma not both run)"


EXPERIMENT = Experiment(
    name="contention",
    param_help={
        "cpus": "simulated CPUs",
        "procs": "job slots running at once (each job forks a child)",
        "pages": "pages the parent maps and writes",
        "cow": "share of the pages each child writes, 0 to 1",
        "slices": "time slices a child's writes are spread over",
        "reclaim": "pages direct reclaim walks after each slice",
        "unmap": "chance that a reclaim walk is followed by try_to_unmap, 0 to 1",
        "rounds": "jobs per slot counted after warm-up",
        "seed": "random seed of the schedule and of reclaim's choices",
    },
    title="AIM7-like load on K CPUs: throughput and lock waiting",
    params={"cpus": [1, 2, 4, 8, 16], "procs": [100, 1000], "pages": [1000], "cow": [1.0],
            "slices": [10], "reclaim": [1], "unmap": [0.5], "rounds": [2], "seed": [1]},
    limits={"cpus": (1, 1024), "procs": (1, 100_000), "pages": (1, MAX_PAGES),
            "cow": (0.0, 1.0), "slices": (1, 10_000), "reclaim": (0, MAX_PAGES),
            "unmap": (0.0, 1.0), "rounds": (1, 10_000)},
    check=lambda p: within_budget(p["pages"] * (1 + p["procs"] * p["cow"]),
                                  "procs x pages x cow"),
    run=run,
    columns=("throughput_jpm", "wait_share", "wait_anon", "sleep_anon", "wait_ptl",
             "hold_max_us_anon", "queue_max_anon", "hot_anon_queue_avg", "hold_max_us_ptl",
             "trylock_fail", "swap_again", "walk_vmas_avg", "wall_s"),
    legend={"cpus": ("cpus", "simulated CPUs (K)"),
            "procs": ("procs", "processes of the forking load (N)"),
            "throughput_jpm": ("jobs/min", "jobs (fork + COW + exit) per simulated minute"),
            "wait_share": ("spin", "share of CPU time spinning on any lock"),
            "wait_anon": ("spin av", "share of CPU time spinning on the anon lock "
                                     "(anon_vma's or anonmm's)"),
            "sleep_anon": ("sleep av", "share of CPU time asleep on the anon rwsem"),
            "wait_ptl": ("spin ptl", "share of CPU time spinning on page_table_lock"),
            "hold_max_us_anon": ("hold av", "longest hold of an anon lock, microseconds"),
            "queue_max_anon": ("queue av", "most CPUs queued on one anon lock"),
            "hot_anon_queue_avg": ("hot q", "CPUs queued on the hottest anon lock, average "
                                            "over time"),
            "hold_max_us_ptl": ("hold ptl", "longest hold of a page_table_lock, microseconds"),
            "trylock_fail": ("tryfail", "failed page_table_lock trylocks in try_to_unmap"),
            "swap_again": ("again", "try_to_unmap calls that returned SWAP_AGAIN"),
            "walk_vmas_avg": ("walk vmas", "VMAs an rmap walk examines, average")},
    claims=[Claim(ref="anon-vma-lock-contention",
                  text="Rik van Riel: 'one CPU is walking the page tables of 1000 "
                       "processes in page_referenced_one, while all other CPUs are "
                       "stuck on the anon_vma lock' (the old anon_vma; gone with "
                       "anon_vma_chain)",
                  published="catastrophic failure for AIM7 (Rik van Riel, Jan 2010)",
                  ours=_picture),
            Claim(ref="kernbench-anonmm-anon-vma",
                  text="anonmm and anon_vma perform 'almost exactly' the same",
                  published="kernbench system s: anonmm 83.85, anon_vma 83.69 (no memory "
                            "pressure)", ours=_same),
            Claim(ref="pte-chain-trylock",
                  text="pte_chain's try_to_unmap trylocks page_table_lock and returns "
                       "SWAP_AGAIN when it fails (Rik van Riel's 2002 rmap)",
                  published="no figure; the mechanism", ours=_trylock)],
    plots=[Plot(x="cpus", y="throughput_jpm", xlabel="CPUs (K)", logx=True, dash="procs",
                ylabel="jobs (fork + COW + exit) per simulated minute",
                title="contention: throughput against CPUs"),
           Plot(x="cpus", y="wait_share", xlabel="CPUs (K)", logx=True, dash="procs",
                ylabel="share of CPU time spinning on locks",
                title="contention: time spent spinning on locks")],
    doc="docs/experiments/contention.md",
)


def run_race_point(scheme: str, p: dict) -> dict:
    return run_race(scheme, pages=int(p["pages"]), vm_lock_rmap=bool(int(p["vm_lock_rmap"])))


def _race_claim(records: list[dict]) -> str:
    return "; ".join(f"{r['scheme']} flag={r['vm_lock_rmap']}: {r['misses_open']} missed PTEs "
                     f"at boundaries its walks reach ({r['misses_any']} at any)"
                     for r in records)


RACE = Experiment(
    name="race",
    param_help={
        "vm_lock_rmap": "1: VMAs under surgery carry VM_LOCK_RMAP; 0: without it",
        "pages": "pages of the VMA cut in quarters (a multiple of 4)",
    },
    title="Rmap walks half-way through VMA surgery: PTEs that exist but are not found",
    params={"vm_lock_rmap": [0, 1], "pages": [16]},
    limits={"vm_lock_rmap": (0, 1), "pages": (4, 4096)},
    # the scenarios cut the VMA in quarters
    check=lambda p: None if p["pages"] % 4 == 0 else f"pages={p['pages']}: a multiple of 4",
    run=run_race_point,
    columns=("boundaries", "boundaries_open", "misses_open", "misses_any", "missed_at_open"),
    legend={"vm_lock_rmap": ("vm_lock_rmap", "1: the VM_LOCK_RMAP flag kept, 0: removed"),
            "pages": ("pages", "pages of the VMA the surgery cuts"),
            "boundaries": ("bounds", "step boundaries of the surgery walked at"),
            "boundaries_open": ("reachable", "of them, boundaries the scheme's walk can reach "
                                             "(no lock it takes is held)"),
            "misses_open": ("missed", "PTEs that exist but are not found, at reachable "
                                      "boundaries"),
            "misses_any": ("missed any", "the same, at any boundary"),
            "missed_at_open": ("where", "scenario@boundary of each miss a walk can reach")},
    claims=[Claim(ref="vm-lock-rmap-race",
                  text="Nick Piggin: rmap is also used for invalidations, which must "
                       "find every PTE; Rik van Riel: a VMA half set up or torn down "
                       "has no PTEs, and a split leaves the other VMA covering them",
                  published="linux-mm, 1-2 Feb 2010 (no figure)", ours=_race_claim)],
    plots=[Plot(x="vm_lock_rmap", y="misses_open", xlabel="the VM_LOCK_RMAP flag",
                ylabel="PTEs missed by walks at reachable boundaries", kind="bar",
                xlabels={0: "removed (0)", 1: "kept (1)"},
                title="race: PTEs that rmap walks miss during VMA surgery")],
    doc="docs/experiments/race.md",
)
