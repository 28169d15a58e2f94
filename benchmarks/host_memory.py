# SPDX-License-Identifier: GPL-2.0-only
"""Measure the host memory the model needs per page, for rmaplab/budget.py.

Each scenario runs in a fresh Python process and reports its peak RSS
(VmHWM of /proc/self/status: getrusage's ru_maxrss would keep the parent's
across fork and exec) less that of the same process before the scenario;
two sizes give the slope (bytes per unit), which is what budget.py's
constants are. Run: python benchmarks/host_memory.py [--scheme S] [--pages N]

Scenarios (N pages, one task unless said):
  mapped     mmap N pages, touch none           -> bytes per page-table slot
  written    mmap and write N                   -> + bytes per frame
  zero       mmap and read N (zero page)        -> bytes per zero PTE (no frame)
  fork4      written, then 4 forks              -> bytes per forked PTE slot
  snapshot   zero, then a snapshot of N entries, written as JSON to /dev/null
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r'''
import json, sys
from rmaplab.machine import Config, Machine
from rmaplab.consts import WINDOW_START, MAX_PAGES
from rmaplab.replay import write_snapshot
scenario, n, scheme = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = Machine(Config(scheme=scheme))
m.spawn("t")
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
base = rss()
def chunks():
    a = 0
    while a < n:
        k = min(MAX_PAGES, n - a)
        yield WINDOW_START + a * 4096, k
        a += k
for addr, k in chunks():
    m.mmap("t", addr, k, "rw")
for addr, k in chunks():
    if scenario in ("written", "fork4"):
        m.write("t", addr, k, 1)
    elif scenario in ("zero", "snapshot"):
        m.read("t", addr, k, [])
if scenario == "fork4":
    for i in range(4):
        m.fork("t", f"c{i}")
if scenario == "snapshot":
    with open("/dev/null", "w") as f:
        write_snapshot(f, m.snapshot("s"))
print(json.dumps({"bytes": rss() - base}))
'''


def measure(scenario: str, n: int, scheme: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, scenario, str(n), scheme],
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)["bytes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scheme", default="modern")
    ap.add_argument("--pages", type=int, default=1 << 21)
    a = ap.parse_args()
    small, big = a.pages // 2, a.pages
    for scenario, per in (("mapped", 1), ("written", 1), ("zero", 1), ("fork4", 5),
                          ("snapshot", 1)):
        lo, hi = measure(scenario, small, a.scheme), measure(scenario, big, a.scheme)
        slope = (hi - lo) / ((big - small) * per)
        print(f"{a.scheme:15} {scenario:9} {slope:8.1f} bytes per page"
              + (" (per PTE slot of 5 tasks)" if per > 1 else "")
              + f"  [{lo / 2**20:.0f} MiB at {small:,}, {hi / 2**20:.0f} MiB at {big:,}]")


if __name__ == "__main__":
    main()
