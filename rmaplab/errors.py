# SPDX-License-Identifier: GPL-2.0-only
"""Errors the model raises inside the kernel paths.

A syscall model raises SysError(errno name); the machine turns it into the
trace result. NoMem is what a failing allocation raises; the syscall that
hit it unwinds and reports ENOMEM, as its kernel counterpart does.
"""

from __future__ import annotations


class SysError(Exception):
    """A syscall's error return, named as the kernel's errno (``EINVAL``...)."""

    def __init__(self, errno: str) -> None:
        super().__init__(errno)
        self.errno = errno


class NoMem(SysError):
    """An allocation failed (kmem_cache_alloc returned NULL)."""

    def __init__(self, kind: str = "") -> None:
        super().__init__("ENOMEM")
        self.kind = kind


class Segv(Exception):
    """A user access that the kernel answers with SIGSEGV, at vpn."""

    def __init__(self, vpn: int) -> None:
        super().__init__(hex(vpn << 12))
        self.vpn = vpn


class OomKill(Exception):
    """The faulting task itself was chosen by the OOM killer."""


class ModelBug(AssertionError):
    """An invariant of the model does not hold (CONFIG_DEBUG_VM's BUG)."""


class InvariantViolated(ModelBug):
    """The invariant checker (debug_vm) found a violation: a bug in rmaplab
    under a scheme, the expected finding under a variant buggy on purpose."""
