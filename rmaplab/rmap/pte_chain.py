# SPDX-License-Identifier: GPL-2.0-only
"""Scheme ``pte_chain``: Rik van Riel's 2002 pte-based rmap (Linux 2.5).

Rik van Riel's pte_chain reverse mapping, mm/rmap.c of Linux 2.5 (2002;
docs/references.md).

Every page knows each page table entry that maps it. A page mapped once
holds a direct pointer to its PTE (PG_direct); a second mapping converts
the pointer into a chain of pte_chain nodes, one PTE per node, newest at
the head; removing a mapping frees its node, and a chain left with one
node turns back into a direct pointer. So every PTE set or cleared costs a
chain operation under the page's pte_chain_lock: at fork (copy_page_range,
one per copied PTE), COW, zap, swap-in, try_to_unmap and mremap (a remove
and an add per moved PTE). counters["rmap_ops"] counts them; the nodes
each examines are rmap_add_nodes (one: the new node goes in front) and
rmap_remove_nodes (the search from the head to the PTE removed: the exit
of the oldest of N sharers examines about N per page), the nodes made and
freed pte_chain_alloc and pte_chain_free.

The model's pte pointer is (mm, vpn), encoded as one integer
(mm.id << 36 | vpn): the mm's page table holds the entry (ptep_to_mm) at
that address (ptep_to_address), which survives VMA split and merge;
mremap's ptes_moved rewrites it. Direct pointers live in a numpy array
indexed by frame (page->pte.direct, -1 for none); chains, only for pages
mapped more than once, are insertion-ordered dicts (O(1) removal; the
kernel's singly linked list searched from the head) walked newest first.
Each entry keeps its insertion number (one per range added) and each
chain the sorted list of them, shared by the frames whose chains grew
alike, so a remove finds the position the kernel's search from the head
would reach by bisection, once per range and shared list (O(n) for the
new list, O(1) per page), and charges exactly that many nodes
(counters["rmap_remove_nodes"]); tests/test_pte_chain_costs.py steps the
literal loops beside it.

A walk examines exactly the chain: walks.vmas counts chain entries,
walks.anon_vmas stays 0, and every entry is a PTE that maps the page.
try_to_unmap_one takes the mm's page_table_lock with a trylock, because
its lock order is the opposite of the fault path's: counters["trylock"]
counts the attempts. None fails in replay (one CPU, nothing concurrent);
the contention model's ``trylock`` experiment makes them fail, with
SWAP_AGAIN's consequence. SWAP_FAIL on VM_LOCKED is the shared try_to_unmap's; that rmap's
loop went on past a SWAP_FAIL and unmapped the other PTEs, the shared one
stops at the first, as every other scheme does. With the newest-first
order that can leave a different set of PTEs when an unmap fails part-way
(a lazily freed page another mapping dirtied): docs/divergences.md, entry 8.
pte_chain nodes are GFP_ATOMIC there with no failure path, so they
are accounted in the slab without failure injection.

Invariants (check()): a frame with mapcount 1 has a direct pointer, one
with mapcount k >= 2 a chain of k distinct entries and no direct pointer,
an unmapped frame neither; every entry names a live mm; live pte_chain
nodes = the sum of chain lengths.

Lock order (that rmap.c's): pagemap_lru_lock -> mm->page_table_lock -> the
page's pte_chain_lock (PG_chainlock); swapout trylocks the page_table_lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .protocol import RmapScheme, WalkStats
from .walk_plan import WalkPlan, vma_of

if TYPE_CHECKING:
    from ..mm_types import MM, VMA

MM_SHIFT = 36  # user addresses are below 2^48: vpns fit in 36 bits
VPN_MASK = (1 << MM_SHIFT) - 1

# Bytes: see docs/struct-sizes.md (struct pte_chain of 2002; the
# page->pte union each struct page carries).
SIZES = {
    "x86_64": {"pte_chain": 16, "page_field": 8},
    "i386": {"pte_chain": 8, "page_field": 4},
}


class Chain(dict):
    """page->pte.chain of one frame: pte pointer -> insertion number, oldest
    first; order holds the same numbers sorted, to find a PTE's place (one
    list shared by frames whose chains grew alike, so never edited: a change
    makes a new one). An attribute of the chain, not a second dict: one
    look-up per page."""

    __slots__ = ("order",)

    def __init__(self, entries: dict[int, int], order: list[int]) -> None:
        super().__init__(entries)
        self.order = order


class PteChainScheme(RmapScheme):
    name = "pte_chain"
    trylock_walks = frozenset({"unmap"})

    def __init__(self, m) -> None:
        super().__init__(m)
        self.direct = np.full(0, -1, np.int64)  # page->pte.direct per frame
        self.chains: dict[int, Chain] = {}  # page->pte.chain per frame
        self.seq = 0
        self.mms: dict[int, MM] = {}  # mm.id -> mm (ptep_to_mm)
        self.nodes = 0

    # -- helpers -------------------------------------------------------------
    def _grow(self) -> None:
        cap = self.m.frames.cap
        if len(self.direct) < cap:
            d = np.full(cap, -1, np.int64)
            d[:len(self.direct)] = self.direct
            self.direct = d

    def _nodes(self, delta: int) -> None:
        """pte_chain_alloc/free: GFP_ATOMIC in 2002, never failed here."""
        self.nodes += delta
        slab = self.m.slab
        slab.live["pte_chain"] += delta
        if delta > 0:
            slab.total["pte_chain"] += delta

    @staticmethod
    def keys(vma: VMA, vpns: np.ndarray) -> np.ndarray:
        return (np.int64(vma.mm.id) << MM_SHIFT) | np.asarray(vpns, np.int64)

    def chain(self, frame: int) -> list[int]:
        """The PTE pointers of frame, as the walk meets them (newest first)."""
        if frame < len(self.direct) and self.direct[frame] >= 0:
            return [int(self.direct[frame])]
        c = self.chains.get(frame)
        return list(reversed(c)) if c is not None else []

    def _one_by_one(self, step, frames: np.ndarray, keys: np.ndarray) -> bool:
        """A range naming a frame twice is done one PTE at a time (the
        shared orders below assume distinct frames); True if it was."""
        fl = frames.tolist()
        if len(set(fl)) == len(fl):
            return False
        for j in range(len(fl)):
            step(frames[j:j + 1], keys[j:j + 1])
        return True

    def _add(self, frames: np.ndarray, keys: np.ndarray) -> None:
        """page_add_rmap for each (frame, pte pointer).

        Cost: one chain operation per PTE (counters["rmap_ops"]) and one
        node examined (rmap_add_nodes: the direct pointer or the chain's
        head; the new node goes in front, nothing is searched); a direct
        pointer turned into a chain allocates two nodes, a push one
        (pte_chain_alloc). The range's new entries share one insertion
        number, so frames whose chains grew alike share one order list
        (never changed in place: a change makes a new one, once per group).
        """
        if self._one_by_one(self._add, frames, keys):
            return
        self._grow()
        direct = self.direct
        chains = self.chains
        seq = self.seq = self.seq + 1
        d = direct[frames]
        conv = d >= 0  # convert a direct pointer into a chain (the oldest entry)
        pair = [-1, seq]
        for f, dk, key in zip(frames[conv].tolist(), d[conv].tolist(), keys[conv].tolist()):
            chains[f] = Chain({dk: -1, key: seq}, pair)
        made = 2 * int(np.count_nonzero(conv))
        direct[frames[conv]] = -1
        rest = np.flatnonzero(~conv)
        fresh: list[int] = []
        memo: dict[int, tuple[list[int], list[int]]] = {}
        last_v: list[int] | None = None
        new_v: list[int] = []
        for j, f, key in zip(rest.tolist(), frames[rest].tolist(), keys[rest].tolist()):
            c = chains.get(f)
            if c is None:
                fresh.append(j)
                continue
            c[key] = seq
            v = c.order
            if v is not last_v:  # not the previous frame's order
                got = memo.get(id(v))
                if got is None:
                    got = memo[id(v)] = (v, [*v, seq])
                last_v, new_v = v, got[1]
            c.order = new_v
        made += len(rest) - len(fresh)
        if fresh:
            direct[frames[fresh]] = keys[fresh]
        counters = self.m.counters
        if made:
            self._nodes(made)
            counters["pte_chain_alloc"] += made
        counters["rmap_ops"] += len(frames)
        counters["rmap_add_nodes"] += len(frames)

    def _remove(self, frames: np.ndarray, keys: np.ndarray) -> None:
        """page_remove_rmap for each (frame, pte pointer).

        Cost: one chain operation per PTE (counters["rmap_ops"]) and the
        nodes the search from the chain's head examines up to the PTE's own
        (rmap_remove_nodes: its position, newest first; one for a direct
        pointer), found by bisecting the chain's insertion order (once per
        group of frames sharing an order list and the entry's number) rather
        than by stepping; its node is freed, and the last node too when one
        entry is left (pte_chain_free).
        """
        direct = self.direct
        hit = direct[frames] == keys
        if not hit.all() and self._one_by_one(self._remove, frames, keys):
            return
        direct[frames[hit]] = -1
        examined = int(np.count_nonzero(hit))
        chains = self.chains
        memo: dict[tuple[int, int], tuple[list[int], list[int], int]] = {}
        fl = frames[~hit].tolist()
        last_v: list[int] | None = None
        last_s = 0
        new_v: list[int] = []
        pos = run = 0
        lone = 0
        for f, key in zip(fl, keys[~hit].tolist()):
            c = chains[f]
            s = c.pop(key)  # KeyError: the PTE was never on the chain (DEBUG_RMAP's BUG)
            v = c.order
            if v is not last_v or s != last_s:  # not the previous frame's group
                got = memo.get((id(v), s))
                if got is None:
                    i = bisect_left(v, s)
                    # the nodes newer than it, and its own
                    got = memo[id(v), s] = (v, v[:i] + v[i + 1:], len(v) - i)
                examined += pos * run
                last_v, last_s, new_v, pos, run = v, s, got[1], got[2], 0
            run += 1
            if len(c) == 1:  # convert back to a direct pointer
                (last,) = c
                direct[f] = last
                del chains[f]
                lone += 1
            else:
                c.order = new_v
        examined += pos * run
        freed = len(fl) + lone
        counters = self.m.counters
        if freed:
            self._nodes(-freed)
            counters["pte_chain_free"] += freed
        counters["rmap_ops"] += len(frames)
        counters["rmap_remove_nodes"] += examined

    # -- mm lifecycle ----------------------------------------------------------
    def mm_init(self, mm: MM) -> None:
        self.mms[mm.id] = mm

    def mm_dup(self, mm: MM, oldmm: MM) -> None:
        self.mms[mm.id] = mm

    def mm_exit(self, mm: MM) -> None:
        del self.mms[mm.id]

    # -- page hooks --------------------------------------------------------------
    def page_add_new_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """page_add_rmap of a fresh page: a direct pointer."""
        self._grow()
        self.direct[frames] = self.keys(vma, vpns)
        self.m.counters["rmap_ops"] += len(frames)
        self.m.counters["rmap_add_nodes"] += len(frames)

    def page_add_anon(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray,
                      exclusive: bool) -> None:
        self._add(frames, self.keys(vma, vpns))

    def page_dup(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        """copy_page_range: page_add_rmap for every PTE the child gets."""
        self._add(frames, self.keys(vma, vpns))

    def page_remove(self, frames: np.ndarray, vma: VMA, vpns: np.ndarray) -> None:
        self._remove(frames, self.keys(vma, vpns))

    def ptes_moved(self, frames: np.ndarray, old: VMA, old_vpns: np.ndarray,
                   new: VMA, new_vpns: np.ndarray) -> None:
        """move_one_page: page_remove_rmap at the old PTE, page_add_rmap at the new."""
        self._remove(frames, self.keys(old, old_vpns))
        self._add(frames, self.keys(new, new_vpns))

    def page_freed(self, frames: np.ndarray) -> None:
        if len(self.direct):
            inside = frames[frames < len(self.direct)]
            assert (self.direct[inside] < 0).all(), "a freed page keeps a pte pointer"
        assert not any(f in self.chains for f in frames.tolist()), "a freed page keeps a chain"

    # -- walks -----------------------------------------------------------------
    def candidates(self, frame: int, st: WalkStats | None) -> Iterator[tuple[VMA | None, int]]:
        """Each pte pointer of the page: its mm, and the VMA there (find_vma).

        Cost: one step per chain entry (charges walks.vmas), no lock but the
        page's pte_chain_lock (walks.anon_vmas stays 0).
        """
        entries = self.chain(frame)
        if st is not None:
            st.listed += len(entries)
        mms = self.mms
        for key in entries:
            if st is not None:
                st.vmas += 1
            vpn = key & VPN_MASK
            yield mms[key >> MM_SHIFT].vma_lookup(vpn), vpn

    def walk_plans(self, frames: np.ndarray):
        """One plan: the chains are the index (every entry maps the page)."""
        self._grow()
        d = self.direct[frames]
        dj = np.flatnonzero(d >= 0)
        listed = (d >= 0).astype(np.int64)
        js: list[int] = []
        ps: list[int] = []
        ks: list[int] = []
        chains = self.chains
        for j in np.flatnonzero(d < 0).tolist():
            c = chains.get(int(frames[j]))
            if c is None:
                continue
            listed[j] = len(c)
            for p, key in enumerate(reversed(c)):
                js.append(j)
                ps.append(p)
                ks.append(key)
        hit_j = np.concatenate((dj, np.asarray(js, np.int64)))
        hit_pos = np.concatenate((np.zeros(len(dj), np.int64), np.asarray(ps, np.int64)))
        keys = np.concatenate((d[dj], np.asarray(ks, np.int64)))
        vmas: list[VMA] = []
        hit_vid = np.zeros(len(keys), np.int64)
        hit_i = np.zeros(len(keys), np.int64)
        found = np.zeros(len(keys), bool)
        mmids = keys >> MM_SHIFT
        vpns = keys & VPN_MASK
        order = np.argsort(mmids, kind="stable")
        bounds = np.flatnonzero(np.diff(mmids[order])) + 1
        for part in np.split(order, bounds) if len(order) else []:
            mm_vmas = list(self.mms[int(mmids[part[0]])].vmas)
            if not mm_vmas:
                continue  # no VMA at the address: the walk looks at no PTE
            k, ok = vma_of(mm_vmas, vpns[part])
            starts = np.fromiter((v.start for v in mm_vmas), np.int64, len(mm_vmas))
            hit_vid[part] = len(vmas) + k
            hit_i[part] = vpns[part] - starts[k]
            found[part] = ok
            vmas.extend(mm_vmas)

        def costs(j: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return k, np.zeros(len(k), np.int64)  # each entry examined is a PTE looked at

        yield WalkPlan(frames=frames, listed=listed, locks=0, vmas=vmas,
                       hit_j=hit_j[found], hit_pos=hit_pos[found], hit_vid=hit_vid[found],
                       hit_i=hit_i[found], costs=costs)

    # -- accounting ------------------------------------------------------------
    def objects(self) -> dict[str, int]:
        return {"pte_chain": self.nodes}

    def rmap_bytes(self) -> dict[str, int]:
        pages = self.m.frames.used
        return {arch: s["pte_chain"] * self.nodes + s["page_field"] * pages
                for arch, s in SIZES.items()}

    def check(self) -> None:
        ft = self.m.frames
        self._grow()
        live = ft.allocated()
        have = (self.direct[live] >= 0).astype(np.int64)
        total = 0
        for f, c in self.chains.items():
            assert len(c) >= 2, f"frame {f}: a chain of {len(c)} (should be direct)"
            assert self.direct[f] < 0, f"frame {f}: both direct and chained"
            total += len(c)
            assert c.order == list(c.values()), f"frame {f}: chain order lost"
            for key in c:
                assert (key >> MM_SHIFT) in self.mms, f"frame {f}: chain names a dead mm"
        pos = {int(f): j for j, f in enumerate(live.tolist())}
        for f, c in self.chains.items():
            assert f in pos, f"frame {f} is free but has a chain"
            have[pos[f]] += len(c)
        bad = np.flatnonzero(have != ft.mapcount[live])
        assert not len(bad), (f"frame {int(live[bad[0]])}: {int(have[bad[0]])} pte pointers, "
                              f"mapcount {int(ft.mapcount[live[bad[0]]])}")
        free = np.ones(len(self.direct), bool)
        free[live] = False
        assert (self.direct[free] < 0).all(), "a free frame keeps a direct pointer"
        assert total == self.nodes == self.m.slab.live["pte_chain"], \
            f"pte_chain nodes: {total} on chains, {self.nodes} counted"
