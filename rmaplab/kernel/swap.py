# SPDX-License-Identifier: GPL-2.0-only
"""Machine-wide settings a kernel run owns: the swap area, page-cluster, the lock.

A run takes the lock file first (one kernel run per machine: swap and
``page-cluster`` are global), refuses to start while any swap area is
active (its own is created only by the trace's ``swapon``), sets
``/proc/sys/vm/page-cluster`` to 0 so that a swap-in reads exactly one page,
and gives every setting back on the way out, whatever happened.

The swap area is a file of ``pages + 1`` pages (page 0 holds the header, so
it offers exactly ``pages`` slots) in a private temporary directory on a
filesystem that can hold swap files.  The header is written here rather than
by mkswap(8), which refuses areas under ten pages; its layout is the
documented one (version 1, last page index, no bad pages, the magic
``SWAPSPACE2`` in the page's last ten bytes).  The file is written out in
full, never fallocated: some filesystems refuse swap on unwritten extents.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import struct
import tempfile
import time

from ..consts import PAGE_SIZE
from .observe import KernelUnavailable
from .worker import Libc, errname

LOCK_PATH = "/run/rmaplab-kernel.lock"
PAGE_CLUSTER = "/proc/sys/vm/page-cluster"
SWAP_DIRS = ("/var/tmp", "/tmp")
#: Prefix of the private directory holding a run's swap file.
SWAP_DIR_PREFIX = "rmaplab-swap-"
#: Filesystems whose swap-file support needs nothing special (btrfs needs
#: NOCOW files, tmpfs and overlayfs cannot hold swap at all).
SWAP_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "f2fs"})


def active_swaps() -> list[str]:
    """Filenames of the swap areas now active, from /proc/swaps."""
    with open("/proc/swaps") as f:
        lines = f.read().splitlines()[1:]
    # /proc/swaps escapes spaces in names; the first field is enough to report.
    return [line.split()[0] for line in lines if line.strip()]


def fs_type(path: str) -> str:
    """The filesystem type holding ``path``, from the longest mount point above it."""
    path = os.path.realpath(path)
    best, kind = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mount = left.split()[4].replace("\\040", " ")
            inside = path == mount or path.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, right.split()[0]
    return kind


def choose_swap_dir() -> str:
    """A directory for the swap file, on a filesystem that supports swap files."""
    seen = []
    for d in SWAP_DIRS:
        if os.path.isdir(d):
            kind = fs_type(d)
            seen.append(f"{d} ({kind})")
            if kind in SWAP_FS:
                return d
    raise KernelUnavailable("no directory for a swap file on a filesystem that supports "
                            f"swap files ({', '.join(sorted(SWAP_FS))}); found: "
                            + (", ".join(seen) or "none"))


def swap_header(pages: int) -> bytes:
    """Page 0 of a version-1 swap area offering ``pages`` slots."""
    head = bytearray(PAGE_SIZE)
    # After 1024 bytes of boot block: version, index of the last page, bad page count.
    struct.pack_into("<III", head, 1024, 1, pages, 0)
    head[PAGE_SIZE - 10:] = b"SWAPSPACE2"
    return bytes(head)


class RunLock:
    """fcntl.flock on the lock file: at most one kernel run per machine."""

    def __init__(self, path: str = LOCK_PATH, wait: float = 0.0) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise KernelUnavailable(f"another kernel run holds {path}; "
                                                "wait for it to finish") from None
                    time.sleep(0.05)
        except BaseException:  # given up, or interrupted while waiting
            self.release()
            raise

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1


class PageCluster:
    """Sets page-cluster to 0 for the run; restore() puts the old value back."""

    def __init__(self) -> None:
        with open(PAGE_CLUSTER) as f:
            self.saved: str | None = f.read().strip()
        self._write("0")

    @staticmethod
    def _write(value: str) -> None:
        with open(PAGE_CLUSTER, "w") as f:
            f.write(value + "\n")

    def restore(self) -> None:
        if self.saved is not None:
            self._write(self.saved)
            self.saved = None


class SwapArea:
    """The run's one swap area: created by ``swapon``, gone after ``swapoff``."""

    def __init__(self, libc: Libc, directory: str | None) -> None:
        self.libc = libc
        self.directory = directory
        self.tmpdir: str | None = None
        self.path: str | None = None
        self.active = False

    def on(self, pages: int) -> str | None:
        """swapon(2) a fresh area of ``pages`` slots; None, or the errno name."""
        if self.active:
            return "EBUSY"  # what swapon(2) says of a second area on the same file
        if self.directory is None:
            self.directory = choose_swap_dir()
        self.tmpdir = tempfile.mkdtemp(prefix=SWAP_DIR_PREFIX, dir=self.directory)
        self.path = os.path.join(self.tmpdir, "swapfile")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, swap_header(pages))
            chunk = bytes(min(pages, 256) * PAGE_SIZE)
            left = pages * PAGE_SIZE
            while left:
                left -= os.write(fd, chunk[:left])
            os.fsync(fd)
        finally:
            os.close(fd)
        # Marked active before the call: an interrupt landing between a
        # successful swapon(2) and the next line must still get it switched off.
        self.active = True
        if self.libc.swapon(self.path.encode(), 0) != 0:
            err = errname(ctypes.get_errno())
            self.active = False
            self._remove_file()
            if err == "EINVAL":
                raise KernelUnavailable(f"swapon({self.path}) failed with EINVAL: the "
                                        "filesystem there does not take swap files")
            return err
        return None

    def off(self) -> str | None:
        """swapoff(2) the area and delete its file; None, or the errno name."""
        if not self.active:
            return "EINVAL"  # swapoff(2) of a path that is no swap area
        assert self.path is not None
        if self.libc.swapoff(self.path.encode()) != 0:
            return errname(ctypes.get_errno())
        self.active = False
        self._remove_file()
        return None

    def cleanup(self) -> list[str]:
        """Switch off and delete whatever is left; returns the problems met."""
        problems = []
        if self.active and self.path is not None:
            # swapoff can be interrupted (EINTR) or fail for lack of memory; retry a little.
            for _ in range(5):
                if self.libc.swapoff(self.path.encode()) == 0:
                    self.active = False
                    break
                err = errname(ctypes.get_errno())
                if err == "EINVAL":
                    self.active = False  # it was never on (or already off)
                    break
                time.sleep(0.1)
            else:
                problems.append(f"swapoff {self.path} failed: {err}")
        if not self.active:
            self._remove_file()
        return problems

    def _remove_file(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = self.path = None


def writeback_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Writeback:"):
                return int(line.split()[1])
    return 0


def wait_writeback(timeout: float = 5.0) -> bool:
    """Wait (bounded) until no page is under writeback; True if it got there.

    Pages a ``pageout`` wrote stay in the swap cache under writeback for a
    while; a fault or ``free`` meeting one then takes another path.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while writeback_kb() != 0:
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True
