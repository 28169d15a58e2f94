# SPDX-License-Identifier: GPL-2.0-only
"""The OOM killer (mm/oom_kill.c), and fault-time allocation that ends in it.

Frames are finite (Config.frames). A fault that needs more than are free
asks reclaim first (vmscan.py), then out_of_memory: the task with the
largest rss plus swap entries dies (ties: the lowest name), possibly the
faulting one. The model's victim exits at once (the kernel's would on its
way back to user space), so its frames are free when out_of_memory returns.
get_free_frame is the page allocator's slow path for one frame
(__alloc_pages_slowpath: direct reclaim, then the OOM killer); it lives
here, above reclaim and exit, while the frame table itself (page_alloc.py)
sits below everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import NoMem, OomKill
from .fork import do_exit, release_task
from .vmscan import try_to_free_pages

if TYPE_CHECKING:
    from .mm_state import MMState
    from .mm_types import MM, Task


def oom_badness(t: Task) -> tuple[int, str]:
    """oom_badness: rss plus swap entries, larger first; ties by name."""
    mm = t.mm
    assert mm is not None  # every task in tasks is alive
    return -(mm.rss + mm.swapents), t.name


def out_of_memory(m: MMState, faulting: MM | None) -> None:
    """out_of_memory: kill the task with the largest rss + swap entries.

    Raises OomKill when the victim is the faulting task itself.
    """
    victim = min(m.tasks.values(), key=oom_badness)
    m.counters["oom_kill"] += 1
    m.kills.append(victim.name)
    do_exit(m, victim)
    release_task(m, victim)
    victim.killed = True
    if faulting is not None and faulting.owner is victim:
        raise OomKill(victim.name)


def get_free_frame(m: MMState, mm: MM | None) -> int:
    """alloc_page for a fault: reclaim first, then the OOM killer.

    Raises OomKill if mm's own task is the victim, NoMem if nothing is left
    to kill (swapoff with every task gone).
    """
    ft = m.frames
    while ft.nr_free < 1:
        try_to_free_pages(m, 1)
        if ft.nr_free >= 1:
            break
        if not m.tasks:
            raise NoMem("page")
        out_of_memory(m, mm)
    return ft.alloc_one()
