#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""AIM7-like forking server: rmap walk cost per scheme, and a kernel baseline.

The scenario, as Rik van Riel's anon_vma_chain posting (January 2010)
describes the workload that motivated it (docs/references.md#aim7-anon-vma-chain,
"from O(N) to 2"):

  1. a parent mmaps P pages rw at 0x100000000000 and writes every page;
  2. it forks N children, all alive at once;
  3. each child writes every page (N * P COW breaks);
  4. with every child still alive, one page_referenced walk of every present
     anonymous page (every allocated frame), per-walk costs recorded;
  5. all children exit, then the parent.

Each scheme runs in a fresh process (multiprocessing, 'spawn'), so wall times
and peak RSS (ru_maxrss) belong to that scheme alone. The same scenario runs
on the real kernel through benchmarks/aim7_kernel.c (built with gcc -O2 into a
temporary directory) unless --no-kernel is given or gcc is missing; the
kernel does no rmap walk without memory pressure, so the model/kernel ratio
is printed with and without the model's walk phase.

Run: python benchmarks/aim7.py [--procs N[,N...]] [--pages P]
                               [--schemes modern,anon_vma_chain,...|all] [--no-kernel]
                               [--kernel-runs R] [--profile K]

With several N (--procs 10,100,1000) each N gets its table, and a summary
table follows with a row per (scheme, N): VMAs (chain entries for
pte_chain, mms for anonmm) visited per page_referenced walk, average and
maximum, what a walk lists, rmap metadata bytes after the forks, and times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from rmaplab.consts import PAGE_SIZE
from rmaplab.machine import Config, Machine
from rmaplab.rmap import SCHEMES
from rmaplab.rmap.core import page_referenced_batch

#: Where the parent maps its pages (the start of the trace window).
BASE = 0x100000000000
KERNEL_SOURCE = Path(__file__).resolve().with_name("aim7_kernel.c")
#: Kernel memory per process besides its data pages (page tables, task, stack,
#: mm, VMAs, libc's private pages); generous on purpose.
KERNEL_OVERHEAD_PER_PROC = 256 << 10
#: Use at most this share of the available memory for the kernel run.
KERNEL_MEMORY_SHARE = 0.8


@dataclass(slots=True, kw_only=True)
class SchemeResult:
    """What one scheme's run of the scenario measured (in its own process)."""

    scheme: str
    procs: int
    pages: int
    t_setup: float  # spawn + mmap + parent writes
    t_fork: float
    t_child_writes: float
    t_walks: float
    t_exits: float
    t_total: float
    walks: int
    vmas_total: int
    vmas_max: int
    listed_total: int
    listed_max: int
    ptes_total: int
    anon_vmas_total: int
    anon_vmas: int  # live after the forks
    avcs: int  # live after the forks
    vmas_live: int  # live after the forks
    rmap_bytes_x86_64: int  # after the forks
    cow: int
    rss_base_kib: int  # ru_maxrss after the imports, before the scenario
    rss_peak_kib: int  # ru_maxrss at the end
    profile: str = ""


@dataclass(slots=True, kw_only=True)
class KernelResult:
    """The median (by total time) of the kernel runs, and every run's total."""

    setup: float
    fork: float
    written: float
    exits: float
    total: float
    minflt_children: int
    hwm_parent_kib: int
    maxrss_child_kib: int
    totals: list[float] = field(default_factory=list)
    warmup_total: float | None = None


# -- the model ---------------------------------------------------------------------

def _scenario(scheme: str, procs: int, pages: int, out: dict) -> None:
    """Run the scenario once on a fresh Machine, filling out (phase times, costs)."""
    clock = time.perf_counter
    m = Machine(Config(scheme=scheme))
    children = [f"child{i}" for i in range(procs)]

    t0 = clock()
    m.spawn("parent")
    m.mmap("parent", BASE, pages, "rw")
    m.write("parent", BASE, pages, 1)
    t1 = clock()
    for c in children:
        m.fork("parent", c)
    t2 = clock()
    objs = m.objects()
    rmap_bytes = m.stats("after-fork")["rmap_bytes"]["x86_64"]
    for c in children:
        m.write(c, BASE, pages, 2)
    t3 = clock()

    # One page_referenced walk per present anonymous page, with per-walk costs.
    # The batched walk gives exactly the literal walks' results and charges
    # (tests/test_walks.py), one array pass per walk order instead of a Python
    # loop per page.
    st = m.walks
    before = st.as_dict()
    frames = m.frames.allocated()
    visited = np.zeros(len(frames), np.int64)
    listed = np.zeros(len(frames), np.int64)
    page_referenced_batch(m, frames, visited, listed)
    vmas_max = int(visited.max()) if len(frames) else 0
    listed_max = int(listed.max()) if len(frames) else 0
    after = st.as_dict()
    t4 = clock()

    for c in children:
        m.exit(c)
    m.exit("parent")
    t5 = clock()

    left = {k: n for k, n in m.objects().items() if n}
    if left:
        raise RuntimeError(f"{scheme}: objects left after every task exited: {left}")
    out.update(
        t_setup=t1 - t0, t_fork=t2 - t1, t_child_writes=t3 - t2, t_walks=t4 - t3,
        t_exits=t5 - t4, t_total=t5 - t0,
        walks=after["count"] - before["count"],
        vmas_total=after["vmas"] - before["vmas"], vmas_max=vmas_max,
        listed_total=after["listed"] - before["listed"], listed_max=listed_max,
        ptes_total=after["ptes"] - before["ptes"],
        anon_vmas_total=after["anon_vmas"] - before["anon_vmas"],
        anon_vmas=objs["anon_vma"], avcs=objs["anon_vma_chain"], vmas_live=objs["vma"],
        rmap_bytes_x86_64=rmap_bytes, cow=m.counters["cow"])


def run_scheme(scheme: str, procs: int, pages: int, profile: int = 0) -> dict:
    """Worker entry point (runs in a fresh process): the scenario for one scheme.

    Returns SchemeResult as a dict. With profile > 0 the scenario runs under
    cProfile (times are inflated) and the top `profile` functions by
    cumulative and by own time come back as text.
    """
    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict = {}
    text = ""
    if profile:
        prof = cProfile.Profile()
        prof.runcall(_scenario, scheme, procs, pages, out)
        buf = io.StringIO()
        ps = pstats.Stats(prof, stream=buf)
        ps.sort_stats("cumulative").print_stats(profile)
        ps.sort_stats("tottime").print_stats(profile)
        text = buf.getvalue()
    else:
        _scenario(scheme, procs, pages, out)
    res = SchemeResult(scheme=scheme, procs=procs, pages=pages, rss_base_kib=rss_base,
                       rss_peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       profile=text, **out)
    return asdict(res)


def run_model(scheme: str, procs: int, pages: int, profile: int) -> SchemeResult:
    """run_scheme in a fresh 'spawn' process, so its RSS and time are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return SchemeResult(**ex.submit(run_scheme, scheme, procs, pages, profile).result())


# -- the kernel baseline ---------------------------------------------------------------

def available_memory() -> tuple[int, str]:
    """Bytes this process may still use: MemAvailable, capped by a memory cgroup."""
    avail = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    where = "MemAvailable"
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        if ctrl == "memory":  # cgroup v1
            files = (f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes",
                     f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")
        elif ctrl == "":  # cgroup v2
            files = (f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup{path}/memory.current")
        else:
            continue
        try:
            limit_s, usage_s = (Path(p).read_text().strip() for p in files)
        except OSError:
            continue
        if limit_s != "max" and int(limit_s) - int(usage_s) < avail:
            avail, where = int(limit_s) - int(usage_s), f"memory cgroup {path}"
    return avail, where


def kernel_preflight(procs: int, pages: int) -> str | None:
    """Why the kernel run cannot go ahead on this machine, or None."""
    if shutil.which("gcc") is None:
        return "gcc not found"
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    need = (procs + 1) * (pages * PAGE_SIZE + KERNEL_OVERHEAD_PER_PROC)
    avail, where = available_memory()
    if need > KERNEL_MEMORY_SHARE * avail:
        return (f"not enough memory: {procs + 1} processes x {pages} pages need about "
                f"{need / 2**30:.2f} GiB, and {where} is {avail / 2**30:.2f} GiB "
                f"(at most {KERNEL_MEMORY_SHARE:.0%} of it is used); "
                "lower --procs/--pages or pass --no-kernel")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if procs + 1000 > pid_max:
        return f"--procs {procs} is too close to kernel.pid_max ({pid_max})"
    if os.geteuid() != 0:
        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft != resource.RLIM_INFINITY and procs + 100 > soft:
            return f"RLIMIT_NPROC ({soft}) is too low for --procs {procs}; raise ulimit -u"
    return None


def _kernel_once(binary: Path, procs: int, pages: int) -> dict[str, float]:
    proc = subprocess.run([str(binary), str(procs), str(pages)], check=False,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary.name} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()} {proc.stdout.strip()}")
    return {k: float(v) for k, v in (kv.split("=") for kv in proc.stdout.split())}


def run_kernel(procs: int, pages: int, runs: int, warmup: bool) -> KernelResult:
    """Build aim7_kernel.c and run it; the median run by total time."""
    with tempfile.TemporaryDirectory(prefix="aim7-") as tmp:
        binary = Path(tmp) / "aim7_kernel"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary),
                        str(KERNEL_SOURCE)], check=True, capture_output=True, text=True)
        warm = _kernel_once(binary, procs, pages)["total"] if warmup else None
        results = [_kernel_once(binary, procs, pages) for _ in range(runs)]
    results.sort(key=lambda r: r["total"])
    med = results[(len(results) - 1) // 2]
    return KernelResult(setup=med["setup"], fork=med["fork"], written=med["written"],
                        exits=med["exits"], total=med["total"],
                        minflt_children=int(med["minflt_children"]),
                        hwm_parent_kib=int(med["hwm_parent_kib"]),
                        maxrss_child_kib=int(med["maxrss_child_kib"]),
                        totals=[r["total"] for r in results], warmup_total=warm)


# -- report --------------------------------------------------------------------------------

def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _s(t: float) -> str:
    return f"{t:.3f}"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.1f}"


def report(console: Console, args: argparse.Namespace, n: int, results: list[SchemeResult],
           kernel: KernelResult | None, kernel_note: str | None) -> None:
    p = args.pages
    table = Table(title=f"AIM7-like forking server: {n} children x {p} pages "
                        f"({(n + 1) * p:,} present anonymous pages)",
                  title_justify="left")
    table.add_column("metric")
    for r in results:
        table.add_column(r.scheme, justify="right")
    if kernel is not None:
        table.add_column(f"kernel {platform.release()}", justify="right")

    def row(label: str, model: list[str], kern: str = "-") -> None:
        table.add_row(label, *model, *([kern] if kernel is not None else []))

    k = kernel
    row("wall time, whole scenario (s)", [_s(r.t_total) for r in results],
        _s(k.total) if k else "-")
    row("  setup: mmap + parent writes", [_s(r.t_setup) for r in results],
        _s(k.setup) if k else "-")
    row(f"  fork {n} children", [_s(r.t_fork) for r in results], _s(k.fork) if k else "-")
    row("  child writes (COW)", [_s(r.t_child_writes) for r in results],
        _s(k.written) if k else "-")
    row("  page_referenced walks", [_s(r.t_walks) for r in results], "none")
    row("  exits", [_s(r.t_exits) for r in results], _s(k.exits) if k else "-")
    row("COW faults (kernel: children's minflt)", [f"{r.cow:,}" for r in results],
        f"{k.minflt_children:,}" if k else "-")
    row("walks (page_referenced calls)", [f"{r.walks:,}" for r in results])
    row("VMAs visited / walk, avg", [f"{r.vmas_total / r.walks:.3f}" for r in results])
    row("VMAs visited / walk, max", [f"{r.vmas_max:,}" for r in results])
    row("listed / walk, avg (no early stop)", [f"{r.listed_total / r.walks:.3f}" for r in results])
    row("listed / walk, max", [f"{r.listed_max:,}" for r in results])
    row("PTEs examined / walk, avg", [f"{r.ptes_total / r.walks:.3f}" for r in results])
    row("anon_vmas live after forks", [f"{r.anon_vmas:,}" for r in results])
    row("avcs live after forks", [f"{r.avcs:,}" for r in results])
    row("rmap_bytes x86_64 after forks", [f"{r.rmap_bytes_x86_64:,}" for r in results])
    row("RSS after imports (MiB)", [_mib(r.rss_base_kib) for r in results])
    row("peak RSS (MiB)", [_mib(r.rss_peak_kib) for r in results],
        f"{_mib(k.hwm_parent_kib)} parent, {_mib(k.maxrss_child_kib)} largest child" if k else "-")
    if k is not None:
        row("model / kernel, whole scenario", [f"{r.t_total / k.total:.2f}" for r in results])
        row("model / kernel, without walks",
            [f"{(r.t_total - r.t_walks) / k.total:.2f}" for r in results])
    console.print(table)

    if args.profile:
        console.print("[yellow]--profile: the model ran under cProfile; its times are "
                      "inflated.[/yellow]")
    if k is not None:
        runs = ", ".join(_s(t) for t in k.totals)
        warm = f"; untimed warm-up run {_s(k.warmup_total)} s" if k.warmup_total else ""
        console.print(f"Kernel: median of {len(k.totals)} runs by total (totals {runs} s{warm}). "
                      "Children write while the parent still forks, so the kernel's fork "
                      "row holds most of the COW work and its child-writes row is the wait "
                      "for the last child after the fork loop; it runs no rmap walk.")
    elif kernel_note:
        console.print(f"Kernel baseline skipped: {kernel_note}.")
    avg = ", ".join(f"{r.scheme} {r.vmas_total / r.walks:.2f} visited / "
                    f"{r.listed_total / r.walks:.2f} listed (max {r.listed_max:,})"
                    for r in results)
    console.print(
        f"Interpretation: VMAs per page_referenced walk, avg: {avg}. Rik van Riel "
        f"(docs/references.md#aim7-anon-vma-chain: \"[PATCH -mm] change anon_vma linking "
        f"to fix multi-process server scalability issue\", linux-mm, 28 Jan 2010, "
        f"<20100128002000.2bf5e365@annuminas.surriel.com>) claims anon_vma_chain cuts "
        f"the average scan "
        f"'from O(N) to 2': Andrea Arcangeli's single anon_vma (scheme anon_vma) "
        f"lists all N+1 = {n + 1:,} VMAs for each of the {(n + 1) * p:,} pages, and "
        f"the mapcount countdown stops a child's page at its child's place in the "
        f"list, (N+3)/2 on average; with anon_vma_chain only the parent's {p:,} pages "
        f"list {n + 1:,}, every child page lists 1, so the average listed is "
        f"(2N+1)/(N+1) = {(2 * n + 1) / (n + 1):.3f} and visited stays at 1. anonmm "
        f"lists the bundle's N+1 mms but finds each page in the mm it indicates "
        f"first; pte_chain examines exactly the mappings, and pays in metadata "
        f"instead (a node per mapping of every shared page after the forks).")


def summary(console: Console, runs: list[SchemeResult]) -> None:
    """One row per (scheme, N): walk costs, metadata and times side by side."""
    table = Table(title="Summary: page_referenced walks after all children wrote",
                  title_justify="left")
    for col, just in (("scheme", "left"), ("N", "right"), ("visited avg", "right"),
                      ("visited max", "right"), ("listed avg", "right"),
                      ("PTEs avg", "right"), ("rmap bytes x86_64", "right"),
                      ("walks (s)", "right"), ("fork (s)", "right"), ("total (s)", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    order = list(dict.fromkeys(r.scheme for r in runs))
    for r in sorted(runs, key=lambda r: (order.index(r.scheme), r.procs)):
        table.add_row(r.scheme, f"{r.procs:,}", f"{r.vmas_total / r.walks:,.2f}",
                      f"{r.vmas_max:,}", f"{r.listed_total / r.walks:,.2f}",
                      f"{r.ptes_total / r.walks:,.2f}", f"{r.rmap_bytes_x86_64:,}",
                      _s(r.t_walks), _s(r.t_fork), _s(r.t_total))
    console.print(table)
    console.print("visited: VMAs examined (chain entries for pte_chain, mms for anonmm) "
                  "until the mapcount countdown ends the walk; listed: what a walk that "
                  "never stopped early would examine; rmap bytes: scheme metadata after "
                  "the forks (docs/struct-sizes.md).")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--procs", default="1000",
                    help="children forked (N), or a comma-separated list; default 1000")
    ap.add_argument("--pages", type=int, default=1000, help="pages mapped (P), default 1000")
    ap.add_argument("--schemes", default="all",
                    help=f"comma-separated schemes or 'all' ({', '.join(SCHEMES)})")
    ap.add_argument("--no-kernel", action="store_true", help="skip the real-kernel baseline")
    ap.add_argument("--kernel-runs", type=int, default=5,
                    help="timed kernel runs after one untimed warm-up; the median is shown")
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="run the model under cProfile and print its top K functions")
    args = ap.parse_args(argv)
    try:
        args.procs_list = [int(x) for x in str(args.procs).split(",") if x.strip()]
    except ValueError:
        ap.error(f"--procs takes integers separated by commas, not {args.procs!r}")
    if (not args.procs_list or min(args.procs_list) < 0 or args.pages < 1
            or args.kernel_runs < 1):
        ap.error("need --procs >= 0, --pages >= 1 and --kernel-runs >= 1")
    if args.schemes == "all":
        args.scheme_list = list(SCHEMES)
    else:
        args.scheme_list = [s.strip() for s in args.schemes.split(",") if s.strip()]
        bad = [s for s in args.scheme_list if s not in SCHEMES]
        if bad or not args.scheme_list:
            ap.error(f"unknown scheme(s) {', '.join(bad) or '(none)'}; "
                     f"choose from {', '.join(SCHEMES)} or 'all'")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=130)
    console.print(f"aim7: --procs {','.join(map(str, args.procs_list))} --pages {args.pages}; "
                  f"schemes {', '.join(args.scheme_list)}; Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
                  f"load average {_load()}")

    everything: list[SchemeResult] = []
    for n in args.procs_list:
        results: list[SchemeResult] = []
        for scheme in args.scheme_list:
            console.print(f"  model, {scheme}, N={n} ...")
            results.append(run_model(scheme, n, args.pages, args.profile))
        everything.extend(results)

        load_after_model = _load()
        kernel: KernelResult | None = None
        note = "--no-kernel" if args.no_kernel else kernel_preflight(n, args.pages)
        if note is None:
            console.print(f"  kernel, N={n}, {args.kernel_runs} runs after a warm-up ...")
            try:
                kernel = run_kernel(n, args.pages, args.kernel_runs, warmup=True)
            except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                note = f"the kernel run failed: {getattr(e, 'stderr', None) or e}"
        if note is not None and not args.no_kernel:
            console.print(f"[red]Kernel baseline refused/skipped: {note}[/red]")

        report(console, args, n, results, kernel, note)
        console.print(f"Load average after the model runs: {load_after_model} (the model's "
                      f"times are noisy when it exceeds the {os.cpu_count()} CPUs: other "
                      "processes share them).")
        for r in results:
            if r.profile:
                console.rule(f"cProfile, {r.scheme}, N={n}")
                console.print(r.profile, markup=False, highlight=False, soft_wrap=True)
    if len(args.procs_list) > 1:
        summary(console, everything)
    return 0


if __name__ == "__main__":
    sys.exit(main())
