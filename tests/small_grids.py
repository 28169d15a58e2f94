# SPDX-License-Identifier: GPL-2.0-only
"""The smallest grid of each registered experiment that still has two
values of a parameter: what the table and plot tests run."""

from __future__ import annotations

SMALL = {"aim7": ["procs=2,4", "pages=8", "cow=0,1"], "hierarchy": ["generations=2,4", "vmas=2"],
         "kbuild": ["jobs=1,2", "units=4", "libs=1", "heap_pages=8"],
         "contention": ["cpus=1,2", "procs=4,8", "pages=8", "rounds=1"], "race": ["pages=4"],
         "trylock": ["cpus=1,2", "procs=4,8", "pages=8", "batch=4"],
         "allocator": ["arenas=1", "spans=2", "rounds=1"],
         "swapoff": ["procs=2,4", "pages=8", "writes=1"]}
