# SPDX-License-Identifier: GPL-2.0-only
"""Seed 004's mmlist and get_task_mm rules, one test each, on the Machine API.

mmlist holds the mms that may have pages on swap: an mm joins when it gets
its first swap entry (try_to_unmap_one puts it at the front, just after
init_mm; copy_page_range at fork puts the child right after its parent),
leaves in mmput after exit_mmap, and swapoff drains the list once no swap
is in use. try_to_unuse (2004) passes over mms whose users already dropped
to zero. get_task_mm refuses a kernel thread that borrowed an mm with
use_mm (PF_BORROWED_MM).
"""

from __future__ import annotations

import numpy as np
import pytest

from rmaplab import fork as fork_mod
from rmaplab import swapfile
from rmaplab.consts import WINDOW_START
from rmaplab.machine import Config, Machine
from rmaplab.mm_types import MM, PTE_PRESENT, PTE_SWAP, Task
from rmaplab.swapfile import SwapArea

A = WINDOW_START
P = 4096


def machine(**kw) -> Machine:
    m = Machine(Config(**kw))
    m.swapon(256)
    return m


def with_pages(m: Machine, name: str, pages: int = 8, value: int = 1) -> None:
    m.spawn(name)
    m.mmap(name, A, pages, "rw")
    m.write(name, A, pages, value)


def mm_of(m: Machine, name: str) -> MM:
    mm = m.task(name).mm
    assert mm is not None
    return mm


def area(m: Machine) -> SwapArea:
    assert m.swap is not None, "swap is off"
    return m.swap


def order(m: Machine) -> list[str]:
    """mmlist as task names (the list head, init_mm, is implicit)."""
    return [mm.owner.name if mm.owner else "?" for mm in m.mmlist]


def swap_ptes(m: Machine, name: str) -> int:
    return sum(int(np.count_nonzero(v.pt & PTE_SWAP)) for v in mm_of(m, name).vmas)


def test_not_on_mmlist_until_first_swap_entry() -> None:
    m = machine()
    with_pages(m, "a")
    m.fork("a", "b")  # fork copies present pages only: no swap entry for anyone
    assert order(m) == []
    assert not mm_of(m, "a").on_mmlist and not mm_of(m, "b").on_mmlist
    m.madvise("a", A, 8, "pageout")  # shared with b: pageout leaves them alone
    assert order(m) == [] and swap_ptes(m, "a") == 0
    m.exit("b")
    m.madvise("a", A, 1, "pageout")  # the first swap entry
    assert swap_ptes(m, "a") == 1
    assert order(m) == ["a"] and mm_of(m, "a").on_mmlist
    m.check()


def test_try_to_unmap_puts_mm_at_the_front() -> None:
    m = machine()
    for name in ("a", "b", "c"):
        with_pages(m, name)
    m.madvise("a", A, 2, "pageout")
    m.madvise("b", A, 2, "pageout")
    assert order(m) == ["b", "a"]  # each newcomer goes right after init_mm
    m.madvise("a", A + 2 * P, 2, "pageout")  # already on: it does not move
    assert order(m) == ["b", "a"]
    # global reclaim unmaps through try_to_unmap too; c is scanned first
    # because a's and b's remaining pages are younger on the LRU
    c_frames = [int(v.pt[0]) >> 8 for v in mm_of(m, "c").vmas]
    assert c_frames
    m.madvise("c", A, 8, "cold")
    m.reclaim(2)
    assert swap_ptes(m, "c") >= 1
    assert order(m) == ["c", "b", "a"]
    m.check()


def test_fork_copying_a_swap_entry_puts_child_after_parent() -> None:
    m = machine()
    with_pages(m, "a")
    with_pages(m, "b")
    m.madvise("a", A, 4, "pageout")
    m.madvise("b", A, 4, "pageout")
    assert order(m) == ["b", "a"]
    m.fork("a", "c")
    assert order(m) == ["b", "a", "c"]
    m.fork("a", "d")  # right after its parent, ahead of its older sibling
    assert order(m) == ["b", "a", "d", "c"]
    m.fork("c", "e")
    assert order(m) == ["b", "a", "d", "c", "e"]
    # a fork that copies no swap entry does not join
    with_pages(m, "x")
    m.fork("x", "y")
    assert "y" not in order(m) and not mm_of(m, "y").on_mmlist
    # nor does one whose parent is on mmlist but has no swap entry any more
    m.read("b", A, 8, [])
    assert swap_ptes(m, "b") == 0 and "b" in order(m)  # b stays: "maybe" swapped
    m.fork("b", "z")
    assert not mm_of(m, "z").on_mmlist
    m.check()


def test_mmput_removes_from_mmlist_only_after_exit_mmap(monkeypatch) -> None:
    m = machine()
    with_pages(m, "a")
    m.madvise("a", A, 4, "pageout")
    mm = mm_of(m, "a")
    seen: list[dict] = []
    real = fork_mod.exit_mmap

    def spy(mach: Machine, victim: MM) -> None:
        # while exit_mmap zaps, the mm must still be on mmlist (seed 004:
        # try_to_unmap_one may still add it without caring for mm_users 0)
        seen.append({"users": victim.mm_users, "on": victim.on_mmlist,
                     "listed": victim in mach.mmlist, "slots": area(mach).inuse})
        real(mach, victim)
        seen.append({"users": victim.mm_users, "on": victim.on_mmlist,
                     "listed": victim in mach.mmlist, "slots": area(mach).inuse})

    monkeypatch.setattr(fork_mod, "exit_mmap", spy)
    # a reference from get_task_mm keeps the address space after exit
    ref = m.get_task_mm("a")
    assert ref is mm and mm.mm_users == 2
    m.exit("a")
    assert seen == [] and mm.mm_users == 1 and mm.on_mmlist and mm.vmas
    m.mmput(ref)
    # on mmlist before and after exit_mmap, which freed the 4 slots
    assert seen == [{"users": 0, "on": True, "listed": True, "slots": 4},
                    {"users": 0, "on": True, "listed": True, "slots": 0}]
    assert not mm.on_mmlist and mm not in m.mmlist
    m.check()


def test_swapoff_drains_mmlist() -> None:
    m = machine()
    with_pages(m, "a")
    with_pages(m, "b")
    m.madvise("a", A, 4, "pageout")
    m.madvise("b", A, 4, "pageout")
    m.read("b", A, 8, [])  # b has no swap entry left but stays on mmlist
    assert order(m) == ["b", "a"] and area(m).inuse
    m.swapoff()
    assert m.mmlist == []
    assert not mm_of(m, "a").on_mmlist and not mm_of(m, "b").on_mmlist
    m.check()


def test_drain_mmlist_keeps_the_list_while_swap_is_in_use() -> None:
    m = machine()
    with_pages(m, "a")
    m.madvise("a", A, 2, "pageout")
    swapfile.drain_mmlist(m)  # slots in use: nothing to drain
    assert order(m) == ["a"]
    # a write fault on its own swapped page frees the slot and the swap cache
    m.write("a", A, 2, 3)
    assert area(m).inuse == 0 and mm_of(m, "a").on_mmlist
    swapfile.drain_mmlist(m)
    assert m.mmlist == [] and not mm_of(m, "a").on_mmlist


@pytest.mark.parametrize("unuse", ["2004", "2019"])
def test_try_to_unuse_skips_mms_whose_users_dropped_to_zero(monkeypatch, unuse: str) -> None:
    """swapoff racing with an exiting mm: between mm_users reaching 0 and
    exit_mmap, the mm is still on mmlist; try_to_unuse must not take it
    (atomic_inc_return == 1 in seed 004, mmget_not_zero in 2019)."""
    m = machine(unuse=unuse)
    with_pages(m, "a", 4, 1)
    with_pages(m, "b", 4, 2)
    m.madvise("a", A, 4, "pageout")
    m.madvise("b", A, 4, "pageout")
    b_mm = mm_of(m, "b")
    unuse_fn = swapfile.try_to_unuse_2004 if unuse == "2004" else swapfile.try_to_unuse_2019
    real = fork_mod.exit_mmap
    during: dict[str, object] = {}

    def racing_exit_mmap(mach: Machine, mm) -> None:
        if mm is b_mm:
            before = mach.counters["swapoff_mms"]
            unuse_fn(mach)  # swapoff's pass runs while b is exiting
            during["mms"] = mach.counters["swapoff_mms"] - before
            during["b_swapents"] = mm.swapents
            during["a"] = [int(v.pt[i]) & PTE_PRESENT
                           for v in mm_of(mach, "a").vmas for i in range(len(v.pt))]
        real(mach, mm)

    monkeypatch.setattr(fork_mod, "exit_mmap", racing_exit_mmap)
    m.exit("b")
    # a only, b (mm_users 0) passed over: 2019 visits each live mm once;
    # 2004 visits a once for each of the 8 slots (b's own included, whose
    # search goes all the way round without taking b)
    assert during["mms"] == (8 if unuse == "2004" else 1)
    assert during["b_swapents"] == 4  # its entries were left to exit_mmap
    assert during["a"] == [PTE_PRESENT] * 4  # a's entries were brought back
    monkeypatch.setattr(fork_mod, "exit_mmap", real)
    assert area(m).inuse == 0 and m.mmlist == [a_mm := mm_of(m, "a")] and a_mm.on_mmlist
    m.swapoff()
    assert m.read("a", A, 4, []) == [1] * 4
    m.check()


# -- get_task_mm, use_mm, unuse_mm -------------------------------------------------

def test_get_task_mm_gives_a_normal_task_a_reference() -> None:
    m = machine()
    with_pages(m, "a")
    mm = mm_of(m, "a")
    got = fork_mod.get_task_mm(m.task("a"))
    assert got is mm and mm.mm_users == 2
    fork_mod.mmput(m, got)
    assert mm.mm_users == 1 and not mm.dead and len(mm.vmas) == 1


def test_get_task_mm_refuses_a_kthread_that_borrowed_the_mm() -> None:
    m = machine()
    with_pages(m, "a")
    mm = mm_of(m, "a")
    kt = m.kthread_create("aio0")
    assert kt.flags & Task.PF_KTHREAD and kt.mm is None
    assert m.get_task_mm("aio0") is None  # no mm at all
    m.use_mm("aio0", "a")
    assert kt.mm is mm and kt.flags & Task.PF_BORROWED_MM
    assert (mm.mm_users, mm.mm_count) == (1, 2)  # use_mm takes mm_count only
    assert m.get_task_mm("aio0") is None
    assert mm.mm_users == 1
    # the owner's own get_task_mm still works
    ref = m.get_task_mm("a")
    assert ref is mm and mm.mm_users == 2
    m.mmput(ref)
    m.unuse_mm("aio0")
    assert kt.mm is None and not kt.flags & Task.PF_BORROWED_MM
    assert (mm.mm_users, mm.mm_count) == (1, 1)
    m.check()


def test_borrowed_mm_of_an_exiting_task_is_not_raised_from_the_dead() -> None:
    """The case seed 004 names: the AIO thread still holds (mm_count) the mm
    of a task that exited; mm_users is 0 and exit_mmap has run. get_task_mm
    on the thread must not hand out a reference to it."""
    m = machine()
    with_pages(m, "a")
    m.madvise("a", A, 2, "pageout")
    mm = mm_of(m, "a")
    m.kthread_create("aio0")
    m.use_mm("aio0", "a")
    m.exit("a")
    assert mm.mm_users == 0 and not mm.dead and not mm.vmas and not mm.on_mmlist
    assert m.get_task_mm("aio0") is None and mm.mm_users == 0
    m.unuse_mm("aio0")
    assert mm.dead and mm.mm_count == 0
    m.check()


def test_unuse_mm_through_the_fork_module() -> None:
    m = machine()
    with_pages(m, "a")
    mm = mm_of(m, "a")
    kt = Task("kt", None, 99)
    kt.flags |= Task.PF_KTHREAD
    fork_mod.use_mm(kt, mm)
    assert fork_mod.get_task_mm(kt) is None
    fork_mod.unuse_mm(m, kt)
    assert not kt.flags & Task.PF_BORROWED_MM and kt.mm is None and mm.mm_count == 1
    # a kernel thread with no borrowed mm has none to give
    assert fork_mod.get_task_mm(kt) is None


def test_kthread_names_and_use_mm_errors() -> None:
    m = machine()
    with_pages(m, "a")
    with_pages(m, "b")
    m.kthread_create("k")
    with pytest.raises(Exception) as e:
        m.kthread_create("a")
    assert getattr(e.value, "errno", None) == "EEXIST"
    m.use_mm("k", "a")
    with pytest.raises(Exception) as e:
        m.use_mm("k", "b")
    assert getattr(e.value, "errno", None) == "EBUSY"
    # kernel threads are not tasks: no snapshot entry, never an OOM victim
    assert set(m.snapshot("s")["tasks"]) == {"a", "b"}
    m.unuse_mm("k")


def test_try_to_unuse_2004_start_mm_rule() -> None:
    """Where seed 004's try_to_unuse starts the next slot (set_start_mm):
    it keeps start_mm when start_mm held the slot, but passing init_mm
    re-arms the rule, so the first holder after the wrap becomes the start.

    mmlist [a, b]; slot 0 held by b, slot 1 by b and a, slot 2 by a. Slot 0
    moves the start to b (1 miss in a, 1 hit); slot 1 starts at b (hit),
    wraps past init_mm, hits a: the start becomes a; slot 2 is found in a at
    once. 5 mms visited; keeping b as the start would cost a miss in b more.
    """
    m = machine(unuse="2004")
    with_pages(m, "a", pages=4)
    m.madvise("a", A, 2, "pageout")  # slots 0 and 1
    m.fork("a", "b")  # b shares both slots and follows a on mmlist
    m.madvise("a", A, 1, "dontneed")  # slot 0 now b's alone
    m.write("a", A + 2 * P, 1, 7)  # a private copy of page 2...
    m.madvise("a", A + 2 * P, 1, "pageout")  # ...into slot 2, a's alone
    assert order(m) == ["a", "b"]
    holders = {s: sorted({mm.owner.name for mm, _, _ in hs})
               for s, hs in swapfile._holders(m).items()}
    assert holders == {0: ["b"], 1: ["a", "b"], 2: ["a"]}
    before = m.counters["swapoff_mms"]
    m.swapoff()
    assert m.counters["swapoff_mms"] - before == 5
    assert m.read("a", A + P, 2, []) == [1, 7] and m.read("b", A, 2, []) == [1, 1]
    m.check()


def test_try_to_unuse_2004_lets_go_of_an_exiting_start_mm(monkeypatch) -> None:
    """2.6.9's try_to_unuse does not hold on to a start_mm whose task has
    gone (mm_users down to its own reference): the next slot starts from
    init_mm again, in mmlist order. mmlist set by hand to [c, x, a, b]:
    slots 0-3 are a's alone (a becomes the start), slots 4-7 are shared by
    b and its child c, 8-11 are x's. a exits as swapoff reads slot 4 in.
    From init_mm slot 4 visits c (hit), x (miss), passes a, b (hit): 3 mms;
    held on to, a would have led to b then round to c: 2."""
    from rmaplab import swap_state

    m = machine(unuse="2004")
    with_pages(m, "a", 4, 1)
    m.madvise("a", A, 4, "pageout")  # slots 0-3
    with_pages(m, "b", 4, 2)
    m.madvise("b", A, 4, "pageout")  # slots 4-7
    m.fork("b", "c")  # c shares b's slots
    with_pages(m, "x", 4, 3)
    m.madvise("x", A, 4, "pageout")  # slots 8-11
    m.mmlist[:] = [mm_of(m, n) for n in ("c", "x", "a", "b")]
    a_mm = mm_of(m, "a")
    real = swap_state.swapin_to_cache
    at: dict[int, int] = {}

    def swapin(mach: Machine, slot: int, mm):
        at[slot] = mach.counters["swapoff_mms"]
        if slot == 4:
            a_mm.mm_users = 0  # a's task is gone; swapoff holds the last reference
        return real(mach, slot, mm)

    monkeypatch.setattr(swap_state, "swapin_to_cache", swapin)
    swapfile.try_to_unuse_2004(m)
    a_mm.mm_users = 1
    # slot 0: c, x miss, a hit; slots 1-3: a at once
    assert at[4] == 3 + 3
    assert at[5] - at[4] == 3  # c, x, b from init_mm
