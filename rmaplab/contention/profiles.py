# SPDX-License-Identifier: GPL-2.0-only
"""Which locks each rmap scheme's kernel takes, and how.

One LockProfile per scheme, taken from the kernel tree the scheme stands
for; the trees are rmaplab.eras' table (docs/eras.md), which era mode and
the docs read too:

  pte_chain       2.5.27 (Rik van Riel's pte-based rmap): the walk holds
                  the page's pte_chain lock (a bit spinlock); page_referenced
                  takes nothing more;
                  try_to_unmap trylocks each mm's page_table_lock, because
                  its lock order is the fault path's reversed, and returns
                  SWAP_AGAIN for a PTE whose lock it did not get. Fork adds
                  each copied PTE to its page's chain, exit and COW remove
                  one (a search of the chain); fork and exit take mmlist_lock.
  anonmm          2.6.6-rc3-mm2 (Hugh Dickins' anonmm, April 2004): the walk
                  holds the family head's lock and visits every mm,
                  trylocking its page_table_lock in both page_referenced_one
                  and try_to_unmap_one (a failure is counted and the walk
                  goes on). dup_rmap and exit_rmap take the head's lock;
                  fork and exit take mmlist_lock (Hugh Dickins' "lighten
                  mmlist_lock" of September 2004 had not yet lightened it).
  anon_vma        2.6.9 (Andrea Arcangeli's single anon_vma per fork
                  family; the same locking stood until 2.6.33, the kernel
                  anon_vma_chain patched): a spinlock per anon_vma, held
                  across the whole walk; the page table lock is taken (not
                  tried) per PTE; anon_vma_link at fork and anon_vma_unlink
                  at exit take it. (2.6.7 still trylocked the page table
                  lock in both walks.) mmlist_lock only for mms with swap
                  entries (since "lighten mmlist_lock").
  anon_vma_chain  2.6.34 (Rik van Riel's anon_vma_chain as merged): a
                  spinlock per anon_vma; a walk locks the page's anon_vma; fork locks each anon_vma
                  it links a chain entry to (anon_vma_chain_link), exit each
                  it unlinks from.
  modern          6.18: one rwsem per fork tree (the root anon_vma's); walks
                  take it for reading, so they do not wait for each other;
                  anon_vma_clone, anon_vma_fork's own link and
                  unlink_anon_vmas take it for writing, once per batch of
                  chain entries under the same root.

Lock order modelled (every scheme): mmlist_lock is never held with another
lock; anon lock -> page_table_lock (fork holds the child's, then the
parent's page_table_lock); pte_chain: page_table_lock -> pte_chain lock in
faults, and the reverse order only with a trylock (try_to_unmap).

The page table lock sections inside a walk that takes (rather than tries)
it are folded into the walk's hold in aim7.py: the walk does not wait for
them and faults do not wait for the walk's (each is one PTE long).
reclaim.py takes them, one per mapping found, so its walks wait for a
fork's or a fault's hold. Which walks
trylock it is the scheme's own fact (RmapScheme.trylock_walks), not this
table's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..eras import tree

#: lock classes, as the statistics name them
ANON = "anon_vma"  # the anon_vma lock / rwsem, or anonmm's head lock
PTL = "page_table_lock"
MMLIST = "mmlist_lock"
CHAIN = "pte_chain"


@dataclass(slots=True, frozen=True, kw_only=True)
class LockProfile:
    """How one scheme's kernel locks rmap walks and VMA/mm changes."""

    scheme: str
    kernel: str
    #: "anon": the walk takes the lock of the page's anon object (anon_vma,
    #: its root, anonmm head); "page": the page's own pte_chain lock
    walk_lock: str
    #: the anon lock is an rwsem (walks read, changes write; waiters sleep)
    anon_rwsem: bool = False
    #: fork and exit always take mmlist_lock (before "lighten mmlist_lock", 2004)
    mmlist_always: bool = False
    #: what fork and exit lock to link or unlink a VMA: "avcs" (each chain
    #: entry's anon_vma), "vma" (the VMA's anon_vma), "mm" (the family's
    #: anonmm head, once per fork or exit), "none"
    links: str = "none"
    #: rmap add/remove of a PTE searches a per-page chain (pte_chain)
    chains: bool = False


PROFILES: dict[str, LockProfile] = {
    p.scheme: p for p in (
        LockProfile(scheme="pte_chain", kernel=tree("pte_chain").kernel, walk_lock="page",
                    mmlist_always=True, chains=True),
        LockProfile(scheme="anonmm", kernel=tree("anonmm").kernel, walk_lock="anon",
                    mmlist_always=True, links="mm"),
        LockProfile(scheme="anon_vma", kernel=tree("anon_vma").kernel, walk_lock="anon",
                    links="vma"),
        LockProfile(scheme="anon_vma_chain", kernel=tree("anon_vma_chain").kernel, walk_lock="anon",
                    links="avcs"),
        LockProfile(scheme="modern", kernel=tree("modern").kernel, walk_lock="anon",
                    anon_rwsem=True, links="avcs"),
    )
}


def profile(scheme: str) -> LockProfile:
    try:
        return PROFILES[scheme]
    except KeyError:
        raise ValueError(f"no lock profile for scheme {scheme!r}; known: "
                         f"{', '.join(PROFILES)}") from None


def lock_object(obj: object) -> object:
    """The object whose lock guards obj's list: the root of an anon_vma tree
    (modern), the head of an anonmm family; obj itself otherwise.

    Follows ``root`` and ``head`` pointers only to objects of obj's own type,
    so an anon_vma's ``head`` (its list of VMAs) is not mistaken for one.
    """
    for _ in range(64):
        nxt = obj
        for attr in ("root", "head"):
            cand = getattr(nxt, attr, None)
            if cand is not None and type(cand) is type(obj) and cand is not nxt:
                nxt = cand
                break
        if nxt is obj:
            return obj
        obj = nxt
    return obj
