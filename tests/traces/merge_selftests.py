#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Write the mremap merge traces translated from the kernel's VMA-merge selftests.

tools/testing/selftests/mm/merge.c runs four mremap scenarios in a forked
and an unforked variant (Lorenzo Stoakes, "tools/testing/selftests: add
forked (un)/faulted VMA merge tests", 5 Jan 2026,
<1daf76d89fdb9d96f38a6a0152d8f3c2e9e30ac7.1767638272.git.lorenzo.stoakes@oracle.com>).
In each, a VMA that was written (it has an anon_vma) is moved out of the
way, unfaulted VMAs are mapped around its old place, and it is moved back
beside them.  Unforked, everything merges; in a fork child, a VMA with a
non-singular anon_vma chain may not give its anon_vma to an unfaulted
neighbour, so the moved VMA stays apart.

The scenarios are rewritten here as trace ops (no selftest code), both
variants in one trace: task ``u`` never forks, task ``p`` writes and forks
``c``, which does the rest.  The selftests move back with MREMAP_DONTUNMAP,
which the trace format does not have; a plain move (MREMAP_FIXED) makes the
same merge decision, since copy_vma merges before the old range is
unmapped.  Before moving, the task writes its page again, so that c's copy
is its own (as the selftest's forked_target_vma does: breaking COW leaves
the anon_vma chain as it is); a shared page moved by mremap is where
anonmm must differ (docs/divergences.md), which is not what these test.
Addresses are page numbers in the trace window.

    .venv/bin/python tests/traces/merge_selftests.py     # then record.py on them
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
WINDOW = 0x100000000000
#: Where the moved VMA waits, far from the others.
AWAY = 20


def at(page: int) -> str:
    return hex(WINDOW + page * 4096)


def mmap(task: str, page: int, n: int) -> dict:
    return {"op": "mmap", "task": task, "addr": at(page), "pages": n, "prot": "rw"}


def move(task: str, page: int, n: int, to: int) -> dict:
    return {"op": "mremap", "task": task, "addr": at(page), "pages": n, "new_pages": n,
            "new_addr": at(to)}


def write(task: str, page: int) -> dict:
    return {"op": "write", "task": task, "addr": at(page), "pages": 1, "value": 7}


Steps = Callable[[str], list[dict]]


def both_variants(setup: Steps, rest: Steps) -> list[dict]:
    """setup(task) maps and writes; rest(task) moves and maps.  u alone, then p forks c."""
    ops: list[dict] = [{"op": "spawn", "task": "u"}, *setup("u"), *rest("u")]
    ops += [{"op": "spawn", "task": "p"}, *setup("p"),
            {"op": "fork", "task": "p", "child": "c"}, *rest("c")]
    return [*ops, {"op": "snapshot", "label": "end"}]


# Each scenario: (comment, setup, rest).  Pages: A, B, C are 3 pages each.
SCENARIOS: dict[str, tuple[str, Steps, Steps]] = {
    "merge_mremap_faulted_to_unfaulted_prev": (
        "written A moved back after unfaulted B, its prev: u merges [1,7); c keeps [1,4) [4,7)",
        lambda t: [mmap(t, 4, 3), write(t, 4)],
        lambda t: [write(t, 4), move(t, 4, 3, AWAY), mmap(t, 1, 3), move(t, AWAY, 3, 4)]),
    "merge_mremap_faulted_to_unfaulted_next": (
        "written A moved back before unfaulted B, its next: u merges [1,7); c keeps [1,4) [4,7)",
        lambda t: [mmap(t, 1, 3), write(t, 1)],
        lambda t: [write(t, 1), move(t, 1, 3, AWAY), mmap(t, 4, 3), move(t, AWAY, 3, 1)]),
    "merge_mremap_faulted_to_unfaulted_prev_unfaulted_next": (
        "written B moved back between unfaulted A and C: u merges [1,10); c keeps three VMAs",
        lambda t: [mmap(t, 4, 3), write(t, 4)],
        lambda t: [write(t, 4), move(t, 4, 3, AWAY), mmap(t, 1, 3), mmap(t, 7, 3),
                   move(t, AWAY, 3, 4)]),
    "merge_mremap_faulted_to_unfaulted_prev_faulted_next": (
        "written B split off BC and moved back between unfaulted A and C (B's own anon_vma): "
        "u merges [1,10); c merges B with C only, [1,4) [4,10)",
        lambda t: [mmap(t, 4, 6), write(t, 4)],
        lambda t: [write(t, 4), move(t, 4, 3, AWAY), mmap(t, 1, 3), move(t, AWAY, 3, 4)]),
}


def trace_text(comment: str, ops: list[dict]) -> str:
    head = ("# Translated from the kernel's VMA-merge selftests (merge.c, forked and unforked\n"
            "# variants; see tests/traces/merge_selftests.py): " + comment + "\n")
    return head + "".join(json.dumps(op) + "\n" for op in ops)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else HERE
    for name, (comment, setup, rest) in SCENARIOS.items():
        path = out / f"{name}.jsonl"
        path.write_text(trace_text(comment, both_variants(setup, rest)))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
