# SPDX-License-Identifier: GPL-2.0-only
"""Experiment ``kbuild``: a make parent forking and exec'ing short-lived
compilers (docs/references.md#kbuild-avc-overhead and
#pte-chain-singletons).

`make` keeps `jobs` compile jobs running until `units` are done. A job is
make forking a shell that execs the compiler driver (fork, then exit of the
forked image and a fresh address space: exec), the driver forking and
exec'ing cc1 (which grows a heap of `heap_pages` and writes it) and then
as; each exits when done. Every
image maps `libs` shared libraries (four VMAs each, as ld.so maps them:
private file mappings stand here as anonymous ones with the same flags and
writes) and its own data, bss, heap and stack.

Sampled at every step: the ratio of anon_vma_chain bytes to vm_area_struct
bytes (Rik van Riel, 2010: "about 1/3"), the share of anonymous pages mapped only
once (pte_chain's direct pointers: ~90% in 2003), pte_chain objects, and
every scheme's rmap bytes (Minchan Kim's concern about the total). Over
the whole build, per compile unit: the rmap maintenance (pte_chain nodes
examined and allocated; the anon_vmas, avcs and anonmms the other schemes'
fork and exit hooks touch).
"""

from __future__ import annotations

import numpy as np

from ..consts import PAGE_SIZE, WINDOW_START
from ..machine import Config, Machine
from .base import Claim, Experiment, Plot, era_of, within_budget

#: rmap maintenance over the whole build (its final exits too), per unit
UPKEEP = ("rmap_add_nodes", "rmap_remove_nodes", "pte_chain_alloc", "rmap_fork_objs",
          "rmap_exit_objs")

# (anon_vma_chain, vm_area_struct) bytes on x86_64 for the schemes that have
# avcs: 6.18's slab object sizes here, and 2.6.33's structs (docs/struct-sizes.md)
AVC_VMA_BYTES = {"modern": (64, 192), "anon_vma_chain": (48, 176)}


def _layout(k: int) -> int:
    return WINDOW_START + k * 1024 * PAGE_SIZE  # apart: neighbours never merge


def _image(m: Machine, task: str, libs: int, rw: list[int]) -> None:
    """exec: a fresh image. Each shared library is four VMAs, as ld.so maps
    it: text (read-only, never written: no anon_vma), relro (written at
    relocation, then read-only), data and bss (written); then the program's
    own writable VMAs rw (data, bss, heap, stack), half of each written."""
    k = 0
    for _ in range(libs):
        m.mmap(task, _layout(k), 4, "r")
        m.mmap(task, _layout(k + 1), 1, "rw")
        m.write(task, _layout(k + 1), 1, 5)
        m.mprotect(task, _layout(k + 1), 1, "r")
        for j in (2, 3):
            m.mmap(task, _layout(k + j), 2, "rw")
            m.write(task, _layout(k + j), 1, 6)
        k += 4
    for j, pages in enumerate(rw):
        addr = _layout(k + j)
        m.mmap(task, addr, pages, "rw")
        m.write(task, addr, max(1, pages // 2), 7)


def run(scheme: str, p: dict) -> dict:
    jobs, units = int(p["jobs"]), int(p["units"])
    lib, heap = int(p["libs"]), int(p["heap_pages"])
    m = Machine(Config(scheme=scheme, era=era_of(p)))
    m.spawn("make")
    _image(m, "make", lib, [8, 8, 16, 4])
    serial = 0
    samples: list[tuple[float, float, int, int]] = []
    ft = m.frames

    def sample() -> None:
        o = m.objects()
        sizes = m.rmap.rmap_bytes()
        live = ft.allocated()
        single = float(np.mean(ft.mapcount[live] == 1)) if len(live) else 1.0
        avc_bytes, vma_bytes = AVC_VMA_BYTES.get(scheme, (0, 1))
        samples.append((o["anon_vma_chain"] * avc_bytes / max(o["vma"] * vma_bytes, 1), single,
                        o["pte_chain"], sizes["x86_64"]))

    running: list[list[str]] = []  # per job: the stack of its live processes
    done = 0
    started = 0
    while done < units:
        while len(running) < jobs and started < units:
            serial += 1
            sh, drv = f"sh{serial}", f"gcc{serial}"
            m.fork("make", sh)  # make forks a shell...
            sample()
            m.exit(sh)  # ...which execs the driver: the forked image goes
            m.spawn(drv)
            _image(m, drv, lib, [4, 4, 8, 4])
            cc1 = f"cc1_{serial}"
            m.fork(drv, f"sh_{cc1}")
            m.exit(f"sh_{cc1}")
            m.spawn(cc1)
            _image(m, cc1, lib, [8, 8, heap, 4])
            running.append([drv, cc1])
            started += 1
            sample()
        # the oldest job moves on: cc1 exits, the driver runs as, then exits
        job = running.pop(0)
        drv, cc1 = job
        m.exit(cc1)
        asm = f"as_{cc1}"
        m.fork(drv, f"sh_{asm}")
        m.exit(f"sh_{asm}")
        m.spawn(asm)
        _image(m, asm, lib, [4, 4, 16, 4])
        sample()
        m.exit(asm)
        m.exit(drv)
        done += 1
    arr = np.array(samples)
    peak = m.objects()
    for t in list(m.tasks):
        m.exit(t)
    upkeep = {k: m.counters[k] / units for k in UPKEEP}
    return {**upkeep,
            "avc_to_vma_bytes": float(arr[:, 0].mean()), "singleton_share": float(arr[:, 1].mean()),
            "pte_chains_peak": int(arr[:, 2].max()), "pte_chains_avg": float(arr[:, 2].mean()),
            "rmap_bytes_avg": float(arr[:, 3].mean()), "rmap_bytes_peak": int(arr[:, 3].max()),
            "samples": len(samples), "vmas_end": peak["vma"]}


def _ratio(records: list[dict]) -> str:
    return "; ".join(f"{r['scheme']} j{r['jobs']}: {r['avc_to_vma_bytes']:.2f}"
                     for r in records if r["scheme"] in ("modern", "anon_vma_chain"))


def _ratio_judge(records: list[dict]) -> bool | None:
    """"About 1/3": every modern and anon_vma_chain point within 25% of 1/3."""
    rs = [r["avc_to_vma_bytes"] for r in records if r["scheme"] in ("modern", "anon_vma_chain")]
    if not rs:
        return None
    return all(abs(x - 1 / 3) <= 0.25 / 3 for x in rs)


def _single_judge(records: list[dict]) -> bool | None:
    """"90% singletons": at least 80% of mapped anonymous pages mapped once."""
    if not records:
        return None
    return all(r["singleton_share"] >= 0.8 for r in records)


def _single(records: list[dict]) -> str:
    """One entry per -j: the share of anonymous pages mapped once (a property
    of the build, the same under every scheme) and, when pte_chain ran, its
    pte_chain objects at peak."""
    parts = []
    for jobs in dict.fromkeys(r["jobs"] for r in records):
        at = [r for r in records if r["jobs"] == jobs]
        part = f"j{jobs}: {100 * at[0]['singleton_share']:.0f}% singletons"
        chains = [r["pte_chains_peak"] for r in at if r["scheme"] == "pte_chain"]
        if chains:
            part += f", {chains[0]:,} pte_chain objects at peak"
        parts.append(part)
    return "; ".join(parts)


EXPERIMENT = Experiment(
    name="kbuild",
    era_mode=True,
    param_help={
        "jobs": "compile jobs make keeps running",
        "units": "compile units built in all",
        "libs": "shared libraries every image maps (4 VMAs each)",
        "heap_pages": "pages of heap cc1 grows and writes",
    },
    title="Kernel-build-like fork+exec load: rmap memory",
    params={"jobs": [1, 4, 16], "units": [64], "libs": [6], "heap_pages": [256]},
    # an image's VMAs sit 1,024 pages apart (_layout): a heap must end before
    # the next slot, or the stack mapped there would merge with it
    limits={"jobs": (1, 1024), "units": (1, 1_000_000), "libs": (0, 64),
            "heap_pages": (1, 1023)},
    check=lambda p: within_budget(p["jobs"] * 3 * (p["heap_pages"] + 8 * p["libs"] + 64),
                                  "jobs x heap_pages"),
    run=run,
    columns=("avc_to_vma_bytes", "singleton_share", "pte_chains_peak", "rmap_bytes_avg",
             "rmap_bytes_peak", *UPKEEP, "wall_s"),
    legend={"avc_to_vma_bytes": ("avc/vma", "anon_vma_chain bytes / vm_area_struct bytes, "
                                            "average over the build (published: about 1/3)"),
            "singleton_share": ("single", "share of mapped anonymous pages mapped once, "
                                          "average over the build"),
            "pte_chains_peak": ("pte_chains", "most pte_chain objects live at once"),
            "rmap_bytes_avg": ("rmap B avg", "rmap metadata, bytes (x86_64), average over "
                                             "the build"),
            "rmap_bytes_peak": ("rmap B max", "the same, most at once"),
            "rmap_add_nodes": ("add nodes", "pte_chain nodes page_add_rmap examines, per "
                                            "compile unit (one per PTE mapped)"),
            "rmap_remove_nodes": ("rm nodes", "pte_chain nodes page_remove_rmap examines "
                                              "(its search from the chain's head), per unit"),
            "pte_chain_alloc": ("chain alloc", "pte_chain nodes allocated, per unit"),
            "rmap_fork_objs": ("fork objs", "anon_vmas and avcs (anon_vma_fork) or anonmms "
                                            "(dup_rmap) touched at fork, per unit"),
            "rmap_exit_objs": ("exit objs", "anon_vmas and avcs (unlink_anon_vmas) or "
                                            "anonmms (exit_rmap) touched at exit and munmap, "
                                            "per unit")},
    claims=[Claim(ref="kbuild-avc-overhead",
                  text="anon_vma_chain memory overhead is about 1/3 of the "
                       "vm_area_struct slab during a kernel compile",
                  published="about 1/3 (Rik van Riel, Jan 2010)", ours=_ratio, judge=_ratio_judge),
            Claim(ref="pte-chain-singletons",
                  text="most anonymous pages are mapped once (pte_chain's direct "
                       "pointer); make -j256 held 24,116 pte_chain objects",
                  published="90% singletons; 24,116 pte_chains (16-way NUMA-Q, 2.5.6x)",
                  ours=_single, judge=_single_judge)],
    plots=[Plot(x="jobs", y="avc_to_vma_bytes", xlabel="parallel jobs (make -j)", logx=True,
                ylabel="anon_vma_chain bytes / vm_area_struct bytes (average)",
                only=("modern", "anon_vma_chain"), reference=(1 / 3, "published: about 1/3"),
                title="kbuild: anon_vma_chain memory against the VMAs' (claimed about 1/3)"),
           Plot(x="jobs", y="rmap_bytes_avg", xlabel="parallel jobs (make -j)", logx=True,
                ylabel="rmap metadata, bytes (x86_64, average over the build)",
                title="kbuild: rmap metadata bytes, every scheme")],
    doc="docs/experiments/kbuild.md",
)
