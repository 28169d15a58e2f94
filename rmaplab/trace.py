# SPDX-License-Identifier: GPL-2.0-only
"""Trace parsing and whole-trace validation (TRACE_FORMAT.md, version 1).

A trace is validated completely before anything runs: a malformed line raises
TraceError naming the line and the key, and no op is executed.
"""

from __future__ import annotations

from dataclasses import dataclass


class TraceError(Exception):
    """A trace that does not follow TRACE_FORMAT.md; names line and key."""

    def __init__(self, line: int, key: str | None, message: str) -> None:
        self.line = line
        self.key = key
        self.message = message
        where = f"line {line}" + (f", key {key!r}" if key else "")
        super().__init__(f"{where}: {message}")


@dataclass(slots=True, frozen=True)
class Op:
    """One validated trace op; absent keys are None."""

    line: int
    op: str
    task: str | None = None
    child: str | None = None
    addr: int | None = None
    pages: int | None = None
    new_pages: int | None = None
    new_addr: int | None = None
    prot: str | None = None
    advice: str | None = None
    value: int | None = None
    label: str | None = None

    @property
    def model_only(self) -> bool:
        return self.op == "reclaim" or (self.op == "madvise" and self.advice == "volatile")
