# SPDX-License-Identifier: GPL-2.0-only
"""Experiment ``allocator``: an allocator handing memory back and taking it
again (docs/references.md#madv-free-ebizzy and #vrange-vma-flag).

`arenas` processes each run a tcmalloc-like arena of `spans` spans of 16
pages. Each round a process frees half its spans, returning them with
`advice` (dontneed: zap now; volatile: the VMA flag of Minchan
Kim's volatile ranges, RFC v3 of December 2012; free:
MADV_FREE, lazily), then a competitor touches memory at the `pressure`
level (none, low, high: reclaim then has to take pages back), then the
process reuses the spans: it reads each page (zero means its data was
dropped) and writes it. A swap area is on, as that patch needs one.

Counted: PTEs the madvise call itself walks, page faults and zero-filled
pages on reuse, pages discarded (volatile or lazily freed) and written to
swap, and VMA splits, merges and exclusive mmap_sem acquisitions (the lock
cost that later sank the VMA-flag design).
"""

from __future__ import annotations

from ..consts import PAGE_SIZE, WINDOW_START
from ..machine import Config, Machine
from ..mm_types import PTE_PRESENT
from ..uapi import is_advice
from .base import Claim, Experiment, Plot, era_of, within_budget

SPAN = 16
PRESSURE = {"none": 0.0, "low": 0.25, "high": 0.6}


def run(scheme: str, p: dict) -> dict:
    arenas, spans, rounds = int(p["arenas"]), int(p["spans"]), int(p["rounds"])
    advice, level = str(p["advice"]), str(p["pressure"])  # checked: EXPERIMENT.choices
    assert is_advice(advice)
    arena_pages = spans * SPAN
    total = arenas * arena_pages
    m = Machine(Config(scheme=scheme, frames=total + total // 2, era=era_of(p)))
    m.swapon(2 * total)
    c = m.counters
    names = [f"arena{i}" for i in range(arenas)]
    for n in names:
        m.spawn(n)
        m.mmap(n, WINDOW_START, arena_pages, "rw")
        m.write(n, WINDOW_START, arena_pages, 1)
    m.spawn("hog")
    hog = int(PRESSURE[level] * total)
    if hog:
        m.mmap("hog", WINDOW_START, hog, "rw")
    out = {"madvise_ptes": 0, "reuse_faults": 0, "zero_filled": 0}
    base = {k: c[k] for k in ("pgvolatile", "lazyfree_discard", "pswpout", "vma_split",
                              "vma_merge", "mmap_sem_write")}
    for r in range(rounds):
        for n in names:
            mm = m.tasks[n].mm
            assert mm is not None  # tasks holds live processes only
            for s in range(r % 2, spans, 2):
                addr = WINDOW_START + s * SPAN * PAGE_SIZE
                vpn = addr // PAGE_SIZE
                if advice != "volatile":  # dontneed and free walk the PTEs now
                    for v in mm.vmas_in(vpn, vpn + SPAN):
                        lo, hi = max(vpn, v.start), min(vpn + SPAN, v.end)
                        out["madvise_ptes"] += int(((v.pt[lo - v.start:hi - v.start]
                                                     & PTE_PRESENT) != 0).sum())
                m.madvise(n, addr, SPAN, advice)
        if hog:
            m.write("hog", WINDOW_START, hog, 3)  # pressure: reclaim must find frames
            m.madvise("hog", WINDOW_START, hog, "dontneed")
        for n in names:
            for s in range(r % 2, spans, 2):
                addr = WINDOW_START + s * SPAN * PAGE_SIZE
                before = c["pgfault"]
                vals = m.read(n, addr, SPAN, [])
                out["zero_filled"] += sum(1 for v in vals if v == 0)
                m.write(n, addr, SPAN, 2 + r % 200)
                out["reuse_faults"] += c["pgfault"] - before
    for k, n0 in base.items():
        out[k] = c[k] - n0
    out["discarded"] = out.pop("pgvolatile") + out.pop("lazyfree_discard")
    for t in list(m.tasks):
        m.exit(t)
    return out


def _win(records: list[dict]) -> str:
    def pick(adv: str, pr: str, key: str) -> int | str:
        for r in records:
            if r["advice"] == adv and r["pressure"] == pr:
                return r[key]
        return "-"
    return ("no pressure, reuse faults: " + ", ".join(f"{a} {pick(a, 'none', 'reuse_faults')}"
            for a in ("dontneed", "volatile", "free"))
            + "; VMA splits: " + ", ".join(f"{a} {pick(a, 'none', 'vma_split')}"
            for a in ("dontneed", "volatile", "free"))
            + "; exclusive mmap_sem: " + ", ".join(f"{a} {pick(a, 'high', 'mmap_sem_write')}"
            for a in ("dontneed", "volatile", "free")) + " (high pressure)")


def _pick(records: list[dict], adv: str, pr: str) -> dict | None:
    return next((r for r in records if r["advice"] == adv and r["pressure"] == pr), None)


def _free_judge(records: list[dict]) -> bool | None:
    """The mechanism behind the ebizzy figure: with no pressure, reusing
    lazily freed spans takes fewer faults and zero-fills than after DONTNEED."""
    free, dont = _pick(records, "free", "none"), _pick(records, "dontneed", "none")
    if free is None or dont is None:
        return None
    return (free["reuse_faults"] < dont["reuse_faults"]
            and free["zero_filled"] < dont["zero_filled"])


def _vrange_judge(records: list[dict]) -> bool | None:
    """Volatile splits or merges VMAs and takes mmap_sem for write; the
    madvise advices never do."""
    vol = [r for r in records if r["advice"] == "volatile"]
    other = [r for r in records if r["advice"] in ("dontneed", "free")]
    if not vol or not other:
        return None
    costly = all(r["mmap_sem_write"] > 0 and r["vma_split"] + r["vma_merge"] > 0 for r in vol)
    return costly and all(r["mmap_sem_write"] == 0 and r["vma_split"] == 0 for r in other)


EXPERIMENT = Experiment(
    name="allocator",
    era_mode=True,
    param_help={
        "advice": "how freed spans go back: dontneed (now), volatile (VMA flag), free (lazily)",
        "pressure": "memory a competitor touches between rounds: none, low, high",
        "arenas": "processes, each with its own arena",
        "spans": "spans of 16 pages in each arena",
        "rounds": "free, pressure and reuse rounds",
    },
    title="Allocator returning memory: dontneed vs volatile vs free",
    params={"advice": ["dontneed", "volatile", "free"], "pressure": ["none", "low", "high"],
            "arenas": [4], "spans": [16], "rounds": [6]},
    limits={"arenas": (1, 10_000), "spans": (1, 4096), "rounds": (1, 10_000)},
    choices={"advice": ("dontneed", "volatile", "free"), "pressure": tuple(PRESSURE)},
    check=lambda p: within_budget(p["arenas"] * p["spans"] * SPAN * 1.5, "arenas x spans"),
    run=run,
    columns=("madvise_ptes", "reuse_faults", "zero_filled", "discarded", "pswpout",
             "vma_split", "vma_merge", "mmap_sem_write", "wall_s"),
    legend={"madvise_ptes": ("madv ptes", "PTEs the madvise calls walk"),
            "reuse_faults": ("faults", "page faults when the spans are reused"),
            "zero_filled": ("zeroed", "pages read back as zero on reuse (data dropped)"),
            "discarded": ("discard", "pages discarded (volatile or lazily freed)"),
            "pswpout": ("swapout", "pages written to swap"),
            "vma_split": ("splits", "VMA splits"),
            "vma_merge": ("merges", "VMA merges"),
            "mmap_sem_write": ("sem wr", "exclusive mmap_sem acquisitions")},
    claims=[Claim(ref="madv-free-ebizzy",
                  text="MADV_FREE over MADV_DONTNEED in jemalloc (no faults and no "
                       "zeroing on reuse when memory is not needed)",
                  published="ebizzy 2961.90 -> 12069.70 records/s (1 thread)", ours=_win,
                  judge=_free_judge),
            Claim(ref="vrange-vma-flag",
                  text="the VMA-flag design of volatile ranges gave terrible ebizzy "
                       "performance through mmap_sem and VMA merge/split",
                  published="qualitative (vrange v10 thread, 2014)",
                  ours=lambda rs: "volatile splits/merges VMAs and takes mmap_sem for write; "
                                  "dontneed and free never do (see vma_split, mmap_sem_write)",
                  judge=_vrange_judge)],
    plots=[Plot(x="pressure", y="reuse_faults", xlabel="memory pressure",
                ylabel="page faults when spans are reused", series="advice",
                title="allocator: faults on reuse by how the spans were returned")],
    schemes=("modern",),
    doc="docs/experiments/allocator.md",
)
