# SPDX-License-Identifier: GPL-2.0-only
"""Lock contention and rmap races: the "catastrophic failure" of Rik van
Riel's anon_vma_chain posting and Nick Piggin's objection, on the model
(docs/references.md#anon-vma-lock-contention, #vm-lock-rmap-race).

  sim.py       a deterministic discrete-event core: K CPUs, a run queue,
               spinlocks and rwsems with FIFO waiters, trylocks
  costs.py     what a unit of kernel work costs in simulated time
  profiles.py  which locks each scheme's kernel takes (anon_vma lock or
               root rwsem, page_table_lock, mmlist_lock, pte_chain lock)
  aim7.py      the AIM7-like forking load run on a real Machine inside the
               simulation: forks, COW faults, exits and reclaim walks
  reclaim.py   the same load under reclaim that evicts over an LRU, where a
               failed page_table_lock trylock leaves a page mapped
               (SWAP_AGAIN) to be scanned again
  race.py      rmap walks run at the step boundaries of VMA surgery
               (Machine.surgery_point): PTEs that exist but are not found

Experiments: ``contention``, ``trylock`` and ``race`` (docs/experiments/contention.md).
"""

from __future__ import annotations

from .aim7 import Aim7, Aim7Params, run_aim7
from .costs import DEFAULT_COSTS, Costs
from .profiles import PROFILES, LockProfile, profile
from .reclaim import ReclaimLoad, ReclaimParams, run_reclaim
from .sim import PREEMPT, Acquire, Compute, Lock, Release, Sim, TryLocks

__all__ = [
           "DEFAULT_COSTS",
           "PREEMPT",
           "PROFILES",
           "Acquire",
           "Aim7",
           "Aim7Params",
           "Compute",
           "Costs",
           "Lock",
           "LockProfile",
           "ReclaimLoad",
           "ReclaimParams",
           "Release",
           "Sim",
           "TryLocks",
           "profile",
           "run_aim7",
           "run_reclaim",
]
