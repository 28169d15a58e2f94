# SPDX-License-Identifier: GPL-2.0-only
"""The library surface a notebook user meets: Machine's docstrings, the
Literal names of uapi.py, the stats record's shape (mypy --strict on the
public modules is in test_lint.py); and the kernel names of the fault path and of fork's rmap
entry point (handle_pte_fault's dispatch, anon_vma_fork)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, get_args

import pytest

from rmaplab import fork as fork_mod
from rmaplab import memory
from rmaplab.consts import ADVICES, PAGE_SIZE, PROTS, WINDOW_START
from rmaplab.machine import COUNTERS, Config, Machine
from rmaplab.rmap import SCHEMES
from rmaplab.rmap.schemes import SCHEME_CLASSES, scheme_class
from rmaplab.uapi import Advice, Counters, Prot, SchemeName, Stats

ROOT = Path(__file__).resolve().parent.parent
A = WINDOW_START


def test_every_public_machine_method_says_what_it_does() -> None:
    missing = [name for name, f in inspect.getmembers(Machine, inspect.isfunction)
               if not name.startswith("_") and not inspect.getdoc(f)]
    assert not missing, missing
    # the syscalls say which errors they raise
    for name in ("spawn", "fork", "exit", "mmap", "munmap", "mprotect", "mremap", "mlock",
                 "munlock", "madvise", "write", "read", "swapon", "swapoff"):
        assert "Raises" in (inspect.getdoc(getattr(Machine, name)) or ""), name
    # and the costly ones their cost, in the one form
    for name in ("fork", "write", "read", "reclaim", "snapshot", "check"):
        assert "\nCost: " in (inspect.getdoc(getattr(Machine, name)) or ""), name


def test_literal_names_are_the_trace_format_strings() -> None:
    assert get_args(Prot) == PROTS == ("rw", "r", "none")
    assert get_args(Advice) == ADVICES
    assert get_args(SchemeName) == SCHEMES
    assert tuple(Counters.__annotations__) == COUNTERS
    assert list(inspect.signature(Machine.mmap).parameters)[-1] == "prot"


@pytest.mark.parametrize(("key", "value"), [("scheme", "anon_vma_chian"), ("unuse", "2020")])
def test_config_names_the_choices_for_a_bad_name(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="choose one of") as e:
        Config(**{key: value})
    assert repr(value) in str(e.value)


def test_stats_is_plain_json_with_the_keys_in_order() -> None:
    m = Machine(Config(scheme="anon_vma_chain"))
    m.spawn("p")
    m.mmap("p", A, 4, "rw")
    m.write("p", A, 4, 1)
    m.fork("p", "c")
    st: Stats = m.stats("x")
    assert type(st) is dict and all(type(v) in (dict, str) for v in st.values())
    assert list(st) == ["label", "scheme", "walks", "objects", "rmap_bytes", "counters"]
    assert list(st["walks"]) == ["count", "anon_vmas", "vmas", "ptes", "listed"]
    assert list(st["objects"]) == ["vma", "anon_vma", "anon_vma_chain", "pte_chain",
                                   "anonmm", "page"]
    assert list(st["counters"]) == list(COUNTERS)
    assert json.loads(json.dumps(st)) == st
    assert st["objects"]["page"] == 4 and st["counters"]["pgfault"] == 4


def _spy(monkeypatch: pytest.MonkeyPatch, mod: Any, name: str,
         calls: list[tuple[str, Any]]) -> None:
    real = getattr(mod, name)

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append((name, args))
        return real(*args, **kw)

    monkeypatch.setattr(mod, name, spy)


def test_handle_pte_fault_sends_each_kind_of_pte_to_its_handler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    m = Machine(Config(scheme="modern"))
    m.spawn("p")
    m.mmap("p", A, 8, "rw")
    m.write("p", A, 4, 1)
    m.fork("p", "c")
    m.write("c", A, 1, 2)  # p's page 0: write-protected, but p's own again
    m.write("c", A + 3 * PAGE_SIZE, 1, 2)  # p's page 3: mapped by p alone...
    m.swapon(16)
    m.madvise("p", A + 3 * PAGE_SIZE, 1, "pageout")  # ...and now a swap PTE
    m.read("p", A + 5 * PAGE_SIZE, 1, [])  # page 5: the zero page
    calls: list[tuple[str, Any]] = []
    for name in ("do_anonymous_page", "do_wp_page", "wp_page_copy", "wp_page_reuse",
                 "do_swap_page"):
        _spy(monkeypatch, memory, name, calls)
    m.write("p", A, 8, 7)

    def vpns(args: tuple[Any, ...]) -> list[int]:
        vma, i0, idx = args[1], args[2], args[3]
        return [int(x) - (A >> 12) for x in vma.start + i0 + idx]

    seen = [(n, vpns(a) if n != "do_swap_page" else [a[2] - (A >> 12)]) for n, a in calls]
    assert seen == [
        # pages 0-2, up to the swap PTE: 0 is reused, 1 and 2 are copied
        ("do_wp_page", [0, 1, 2]), ("wp_page_copy", [1, 2]), ("wp_page_reuse", [0]),
        # page 3 comes back from swap, then the rest of the range
        ("do_swap_page", [3]),
        ("do_wp_page", [3, 5]), ("wp_page_copy", [5]), ("wp_page_reuse", [3]),
        ("do_anonymous_page", [4, 6, 7]),
    ]
    assert m.read("p", A, 8, []) == [7] * 8
    assert m.read("c", A, 4, []) == [2, 1, 1, 2]
    m.check()


def test_a_read_of_an_empty_pte_maps_the_zero_page_through_do_anonymous_page(
        monkeypatch: pytest.MonkeyPatch) -> None:
    m = Machine()
    m.spawn("p")
    m.mmap("p", A, 3, "r")
    calls: list[tuple[str, Any]] = []
    _spy(monkeypatch, memory, "do_anonymous_page", calls)
    assert m.read("p", A, 3, []) == [0, 0, 0]
    assert len(calls) == 1 and calls[0][1][4] is None  # no frames: the zero page
    assert m.snapshot("s")["tasks"]["p"]["pages"][hex(A)]["frame"] == "zero"


def test_dup_mmap_calls_anon_vma_fork_for_every_vma(monkeypatch: pytest.MonkeyPatch) -> None:
    m = Machine(Config(scheme="anon_vma_chain"))
    m.spawn("p")
    m.mmap("p", A, 2, "rw")
    m.mmap("p", A + 4 * PAGE_SIZE, 2, "r")
    m.write("p", A, 2, 1)
    calls: list[tuple[str, Any]] = []
    _spy(monkeypatch, fork_mod, "anon_vma_fork", calls)
    m.fork("p", "c")
    parent, child = m.task("p").mm, m.task("c").mm
    assert parent is not None and child is not None
    assert [(a[1], a[2]) for _, a in calls] == list(zip(child.vmas, parent.vmas))
    # the written VMA's copy got an anon_vma of its own; the unfaulted one none
    assert child.vmas[0].anon_vma is not None and child.vmas[0].forked
    assert child.vmas[1].anon_vma is None
    m.check()


def test_the_scheme_registry_follows_schemes() -> None:
    assert tuple(SCHEME_CLASSES) == SCHEMES
    assert all(scheme_class(s).name == s for s in SCHEMES)
    with pytest.raises(ValueError, match="choose one of modern, anon_vma_chain"):
        scheme_class("pte_chains")
