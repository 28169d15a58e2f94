# SPDX-License-Identifier: GPL-2.0-only
"""Experiments ``contention`` and ``race``: seed 002's lock picture and its
VM_LOCK_RMAP argument, on the model (docs/experiments/contention.md).

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
from .base import Claim, Experiment, Plot, forked_footprint, within_budget


def run(scheme: str, p: dict) -> dict:
    params = Aim7Params(cpus=int(p["cpus"]), procs=int(p["procs"]), pages=int(p["pages"]),
                        cow=float(p["cow"]), slices=int(p["slices"]),
                        reclaim=int(p["reclaim"]), unmap=float(p["unmap"]),
                        rounds=int(p["rounds"]), seed=int(p["seed"]))
    out: dict[str, object] = dict(run_aim7(scheme, params))
    out["curve"] = f"{scheme} N={params.procs}"
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
    title="AIM7-like load on K CPUs: throughput and lock waiting",
    params={"cpus": [1, 2, 4, 8, 16], "procs": [100, 1000], "pages": [1000], "cow": [1.0],
            "slices": [10], "reclaim": [1], "unmap": [0.5], "rounds": [2], "seed": [1]},
    limits={"cpus": (1, 1024), "procs": (1, 100_000), "pages": (1, MAX_PAGES),
            "cow": (0.0, 1.0), "slices": (1, 10_000), "reclaim": (0, MAX_PAGES),
            "unmap": (0.0, 1.0), "rounds": (1, 10_000)},
    check=lambda p: within_budget(p["pages"] * (1 + p["procs"] * p["cow"]),
                                  "procs x pages x cow"),
    footprint=lambda p: forked_footprint(p["pages"], p["procs"], p["cow"]),
    run=run,
    columns=("throughput_jpm", "wait_share", "wait_anon", "sleep_anon", "wait_ptl",
             "hold_max_us_anon", "queue_max_anon", "hot_anon_queue_avg", "hold_max_us_ptl",
             "trylock_fail", "swap_again", "walk_vmas_avg", "wall_s"),
    claims=[Claim(row="1", text="seed 002: 'one CPU is walking the page tables of 1000 "
                                "processes in page_referenced_one, while all other CPUs are "
                                "stuck on the anon_vma lock' (the old anon_vma; gone with "
                                "anon_vma_chain)",
                  published="catastrophic failure for AIM7 (Rik van Riel, Jan 2010)",
                  ours=_picture),
            Claim(row="3c", text="anonmm and anon_vma perform 'almost exactly' the same",
                  published="kernbench system s: anonmm 83.85, anon_vma 83.69 (no memory "
                            "pressure)", ours=_same),
            Claim(row="-", text="pte_chain's try_to_unmap trylocks page_table_lock and returns "
                                "SWAP_AGAIN when it fails (seed 001)",
                  published="no figure; the mechanism", ours=_trylock)],
    plots=[Plot(x="cpus", y="throughput_jpm", xlabel="CPUs", logx=True,
                ylabel="jobs (fork + COW + exit) per simulated minute", series="curve"),
           Plot(x="cpus", y="wait_share", xlabel="CPUs", logx=True,
                ylabel="share of CPU time spinning on locks", series="curve")],
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
    title="Rmap walks half-way through VMA surgery: PTEs that exist but are not found",
    params={"vm_lock_rmap": [0, 1], "pages": [16]},
    limits={"vm_lock_rmap": (0, 1), "pages": (4, 4096)},
    # the scenarios cut the VMA in quarters
    check=lambda p: None if p["pages"] % 4 == 0 else f"pages={p['pages']}: a multiple of 4",
    run=run_race_point,
    columns=("boundaries", "boundaries_open", "misses_open", "misses_any", "missed_at_open"),
    claims=[Claim(row="-", text="Nick Piggin: rmap is also used for invalidations, which must "
                                "find every PTE; Rik van Riel: a VMA half set up or torn down "
                                "has no PTEs, and a split leaves the other VMA covering them",
                  published="seed 002, 1-2 Feb 2010 (no figure)", ours=_race_claim)],
    plots=[Plot(x="vm_lock_rmap", y="misses_open", xlabel="VM_LOCK_RMAP (0 removed, 1 kept)",
                ylabel="PTEs missed by walks at reachable boundaries")],
    doc="docs/experiments/contention.md",
)
