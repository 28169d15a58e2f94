# SPDX-License-Identifier: GPL-2.0-only
"""Reading a live process's state from /proc, as the runner (root) sees it.

For each task: its VMAs inside the trace window (start, end and prot from
/proc/PID/maps, ``locked`` from ``lo`` in the VmFlags of /proc/PID/smaps), and one
/proc/PID/pagemap entry per page of those VMAs, read in one pread per VMA
(Documentation/admin-guide/mm/pagemap.rst):

    bit 63 present, bit 62 swapped;
    present: bits 0-54 the page frame number (only visible with CAP_SYS_ADMIN);
    swapped: bits 0-4 the swap type, bits 5-54 the swap offset.

Present frames get their mapcount from /proc/kpagecount; the shared zero
page is recognised by KPF_ZERO_PAGE in /proc/kpageflags, or by being the
frame a read of a never-written page maps (found once, at start).

Nothing here faults a page of a worker or changes its state: pagemap, smaps
and the kpage files only read page tables and page flags.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct

from ..consts import PAGE_SIZE, WINDOW_END, WINDOW_START
from ..snapshot import ZERO, RawPage, RawTask, RawVma
from .worker import MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, Libc, open_maps, window_maps

PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_PFN_MASK = (1 << 55) - 1
PM_SWAP_TYPE_BITS = 5
KPF_ZERO_PAGE = 24

_HEADER_RE = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ([-r][-w][-x][ps]) ")
_PERMS_PROT = {"rw": "rw", "r-": "r", "--": "none"}


class KernelUnavailable(Exception):
    """This machine cannot run traces (not root, /proc files missing, ...)."""


def _pread_u64s(fd: int, index: int, count: int) -> list[int]:
    """``count`` little-endian u64s at entry ``index`` of a /proc table file."""
    data = os.pread(fd, count * 8, index * 8)
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def _prot(perms: str, pid: int, start: int) -> str:
    prot = _PERMS_PROT.get(perms[:2])
    if prot is None or perms[2:] != "-p":
        raise RuntimeError(f"pid {pid} has a VMA at {start:#x} with perms {perms!r}, "
                           "which no trace op makes")
    return prot


def read_vmas(pid: int, *, locked_possible: bool = True) -> list[RawVma]:
    """VMAs of ``pid`` inside the trace window.

    Start, end and prot come from PROCMAP_QUERY on /proc/PID/maps; the
    ``locked`` flag only from /proc/PID/smaps (VmFlags ``lo``), which is far
    slower to produce (it walks every page table of the process), so callers
    that know no mlock was ever issued in the run may pass
    ``locked_possible=False``: VM_LOCKED then cannot be set anywhere.
    """
    fd = open_maps(pid)
    try:
        maps = window_maps(fd)
    finally:
        os.close(fd)
    vmas = [RawVma(start, end, _prot(perms, pid, start), False) for start, end, perms in maps]
    if locked_possible and vmas:
        locked = _smaps_locked(pid)
        for v in vmas:
            if v.start not in locked:
                raise RuntimeError(f"pid {pid}: VMA at {v.start:#x} missing from smaps")
            v.locked = locked[v.start]
    return vmas


def _smaps_locked(pid: int) -> dict[int, bool]:
    """start -> VM_LOCKED for each VMA of ``pid`` inside the window, from smaps."""
    out: dict[int, bool] = {}
    current: int | None = None
    with open(f"/proc/{pid}/smaps", "rb") as f:
        for line in f:
            m = _HEADER_RE.match(line)
            if m:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                current = start if start < WINDOW_END and end > WINDOW_START else None
                if current is not None:
                    out[current] = False
            elif current is not None and line.startswith(b"VmFlags:"):
                out[current] = b"lo" in line.split()[1:]
    return out


class Observer:
    """Open handles on the kpage files and the zero page's frame number."""

    def __init__(self) -> None:
        self._count_fd = -1
        self._flags_fd = -1
        self.zero_pfn = -1
        try:
            self._count_fd = _open_ro("/proc/kpagecount")
            self._flags_fd = _open_ro("/proc/kpageflags")
            self.zero_pfn = find_zero_pfn()
            flags = _pread_u64s(self._flags_fd, self.zero_pfn, 1)
            if not flags:
                raise KernelUnavailable("/proc/kpageflags has no entry for the zero page")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self._count_fd, self._flags_fd):
            if fd >= 0:
                os.close(fd)
        self._count_fd = self._flags_fd = -1

    def raw_task(self, pid: int, *, locked_possible: bool = True) -> RawTask:
        """The VMAs and non-empty page-table entries of ``pid`` in the window."""
        vmas = read_vmas(pid, locked_possible=locked_possible)
        entries: list[tuple[int, int]] = []
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for v in vmas:
                first = v.start // PAGE_SIZE
                count = (v.end - v.start) // PAGE_SIZE
                words = _pread_u64s(fd, first, count)
                if len(words) != count:
                    raise RuntimeError(f"short pagemap read for pid {pid} at {v.start:#x}")
                entries.extend(((first + i) * PAGE_SIZE, w)
                               for i, w in enumerate(words) if w & (PM_PRESENT | PM_SWAP))
        finally:
            os.close(fd)
        pfns = {w & PM_PFN_MASK for _, w in entries if w & PM_PRESENT}
        counts, flags = self._kpage_info(pfns)
        pages: list[RawPage] = []
        for addr, w in entries:
            if w & PM_PRESENT:
                pfn = w & PM_PFN_MASK
                if pfn == 0:
                    raise KernelUnavailable("/proc/PID/pagemap shows no frame numbers "
                                            "(needs CAP_SYS_ADMIN)")
                if pfn == self.zero_pfn or flags[pfn] >> KPF_ZERO_PAGE & 1:
                    pages.append(RawPage(addr, "present", ZERO))
                else:
                    pages.append(RawPage(addr, "present", ("pfn", pfn), counts[pfn]))
            else:
                swp = w & PM_PFN_MASK
                kind = swp & ((1 << PM_SWAP_TYPE_BITS) - 1)
                pages.append(RawPage(addr, "swap", ("swp", kind, swp >> PM_SWAP_TYPE_BITS)))
        return RawTask(vmas=vmas, pages=pages)

    def _kpage_info(self, pfns: set[int]) -> tuple[dict[int, int], dict[int, int]]:
        """kpagecount and kpageflags of each frame, reading runs of nearby frames at once."""
        counts: dict[int, int] = {}
        flags: dict[int, int] = {}
        ordered = sorted(pfns)
        i = 0
        while i < len(ordered):
            j = i
            # Gaps of up to 64 frames are cheaper to read through than to seek over.
            while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] <= 64:
                j += 1
            lo, n = ordered[i], ordered[j] - ordered[i] + 1
            c = _pread_u64s(self._count_fd, lo, n)
            fl = _pread_u64s(self._flags_fd, lo, n)
            for pfn in ordered[i:j + 1]:
                counts[pfn] = c[pfn - lo]
                flags[pfn] = fl[pfn - lo]
            i = j + 1
        return counts, flags


def oom_kills() -> int:
    """How many tasks the kernel's OOM killer has killed since boot (vmstat oom_kill)."""
    with open("/proc/vmstat", "rb") as f:
        for line in f:
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
    return 0


def _open_ro(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KernelUnavailable(f"cannot open {path}: {exc.strerror} "
                                "(needs root and CONFIG_PROC_PAGE_MONITOR)") from None


def find_zero_pfn() -> int:
    """Frame number of the shared zero page: read a fresh private page, look it up.

    The page is mapped in the runner, far from the trace window, and unmapped
    again; it also proves that pagemap shows frame numbers here.
    """
    libc = Libc()
    addr = libc.mmap(None, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if addr in (None, MAP_FAILED):
        raise KernelUnavailable("cannot map a probe page in the runner")
    try:
        if ctypes.c_ubyte.from_address(addr).value != 0:
            raise KernelUnavailable("a fresh anonymous page did not read as zero")
        fd = _open_ro("/proc/self/pagemap")
        try:
            (word,) = _pread_u64s(fd, addr // PAGE_SIZE, 1)
        finally:
            os.close(fd)
    finally:
        libc.munmap(addr, PAGE_SIZE)
    if not word & PM_PRESENT:
        raise KernelUnavailable("a read fault did not map the zero page (pagemap shows "
                                "the probe page not present)")
    pfn = word & PM_PFN_MASK
    if pfn == 0:
        raise KernelUnavailable("/proc/self/pagemap shows no frame numbers: "
                                "run as root (CAP_SYS_ADMIN)")
    return pfn


def preflight() -> None:
    """Raise KernelUnavailable naming what this machine lacks for a kernel run."""
    if os.geteuid() != 0:
        raise KernelUnavailable("kernel runs need root (frame numbers in /proc/PID/pagemap, "
                                "/proc/kpagecount, swapon and /proc/sys/vm/page-cluster)")
    for path in ("/proc/self/pagemap", "/proc/kpagecount", "/proc/kpageflags",
                 "/proc/self/smaps", "/proc/swaps", "/proc/meminfo"):
        if not os.path.exists(path):
            raise KernelUnavailable(f"{path} is missing on this kernel")
    if not os.access("/proc/sys/vm/page-cluster", os.W_OK):
        raise KernelUnavailable("/proc/sys/vm/page-cluster is not writable")
    if not hasattr(os, "pidfd_open"):
        raise KernelUnavailable("this Python lacks os.pidfd_open (Linux 5.3+ needed)")
