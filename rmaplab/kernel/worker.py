# SPDX-License-Identifier: GPL-2.0-only
"""Worker processes: one real process per trace task, driven over a socket.

The runner forks a worker for each ``spawn``; a worker forks itself for each
``fork`` (so the child really gets a copy-on-write copy of the worker's
address space) and the child becomes the worker of the child task.  A worker
only ever does what the runner asks, one command at a time:

    runner -> worker   (command, *args)      pickled, length-prefixed
    worker -> runner   {"ok": ..., ...}      the op's result fields

Every syscall goes through ctypes on libc with errno kept, and errors come
back as errno names, exactly as the trace results want them.  Reads and
writes touch the first byte of each page in address order; an access that
would fault is answered "SIGSEGV" after checking /proc/self/maps beforehand,
so the worker never takes a real signal.

Invariants a worker keeps:
- it never maps, unmaps or touches anything outside the trace window (every
  range is checked again here, so a runner bug cannot MAP_FIXED over Python);
- it has THP disabled (prctl) before its first mapping, and runs on the one
  CPU the run is pinned to;
- it holds no file descriptor but its channel (and 0-2), so the runner
  closing its end, or dying, always ends the worker.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import errno
import fcntl
import gc
import os
import pickle
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

from ..consts import PAGE_SIZE, WINDOW_END, WINDOW_START

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
PR_SET_NAME, PR_SET_CHILD_SUBREAPER = 15, 36
#: The comm name of every worker (ps, /proc/PID/comm), to find leftovers by.
WORKER_COMM = b"rmaplab-worker"
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
MAP_FAILED = ctypes.c_void_p(-1).value

PROTS = {"rw": PROT_READ | PROT_WRITE, "r": PROT_READ, "none": PROT_NONE}
ADVICE = {"willneed": 3, "dontneed": 4, "free": 8, "cold": 20, "pageout": 21}

_HDR = struct.Struct("<I")


class WorkerBug(Exception):
    """The worker was asked for something no valid trace produces."""


class Libc:
    """The few libc calls the runner and its workers make, with errno kept."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        vp, sz, i, ul = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_ulong
        self.mmap = self._fn(lib.mmap, vp, [vp, sz, i, i, i, ctypes.c_long])
        self.munmap = self._fn(lib.munmap, i, [vp, sz])
        self.mprotect = self._fn(lib.mprotect, i, [vp, sz, i])
        # mremap is variadic; on x86-64 passing the optional new address as a
        # fifth register argument is what the C call does anyway.
        self.mremap = self._fn(lib.mremap, vp, [vp, sz, sz, i, vp])
        self.mlock = self._fn(lib.mlock, i, [vp, sz])
        self.munlock = self._fn(lib.munlock, i, [vp, sz])
        self.madvise = self._fn(lib.madvise, i, [vp, sz, i])
        self.prctl = self._fn(lib.prctl, i, [i, ul, ul, ul, ul])
        self.swapon = self._fn(lib.swapon, i, [ctypes.c_char_p, i])
        self.swapoff = self._fn(lib.swapoff, i, [ctypes.c_char_p])

    @staticmethod
    def _fn(f: Any, restype: Any, argtypes: list[Any]) -> Any:
        f.restype = restype
        f.argtypes = argtypes
        return f


def errname(num: int) -> str:
    """The errno name (``EEXIST``) the trace results use."""
    return errno.errorcode.get(num, f"E{num}")


def _fail() -> dict[str, Any]:
    return {"ok": False, "error": errname(ctypes.get_errno())}


# -- framing, shared with the runner ----------------------------------------

def send_msg(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    """Send one pickled message; ``fds`` ride along (SCM_RIGHTS) on its first byte."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buf = _HDR.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [buf], fds)
        buf = buf[sent:]
    if buf:
        sock.sendall(buf)


def recv_msg(sock: socket.socket) -> tuple[Any, list[int]]:
    """Receive one message and any descriptors sent with it; EOFError on close."""
    fds: list[int] = []
    head = b""
    while len(head) < _HDR.size:
        chunk, got, _flags, _addr = socket.recv_fds(sock, _HDR.size - len(head), 4)
        if not chunk:
            raise EOFError("channel closed")
        head += chunk
        fds.extend(got)
    (size,) = _HDR.unpack(head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        body += chunk
    return pickle.loads(bytes(body)), fds


# -- what a worker does -----------------------------------------------------

def _check_range(addr: int, pages: int) -> int:
    """Length of [addr, addr+pages) after making sure it lies in the window."""
    length = pages * PAGE_SIZE
    if addr % PAGE_SIZE or not (addr >= WINDOW_START and addr + length <= WINDOW_END and pages > 0):
        raise WorkerBug(f"range {addr:#x}+{pages} pages is not inside the trace window")
    return length


#: ioctl on /proc/PID/maps (Linux 6.11+, uapi linux/fs.h): one VMA per call.
PROCMAP_QUERY = 0xC0686611
_PMQ = struct.Struct("<QQQQQQQQQIIIIQQ")  # struct procmap_query, 104 bytes
PMQ_READABLE, PMQ_WRITABLE, PMQ_EXECUTABLE, PMQ_SHARED = 0x1, 0x2, 0x4, 0x8
PMQ_COVERING_OR_NEXT = 0x10


def window_maps(maps_fd: int) -> list[tuple[int, int, str]]:
    """(start, end, perms as in /proc/PID/maps) of the VMAs inside the trace window.

    ``maps_fd`` is an open /proc/PID/maps.  Reading that file costs a couple
    of microseconds per VMA of the whole process here (a worker inherits the
    runner's hundreds), so VMAs are asked for one at a time with
    PROCMAP_QUERY, starting at the window; older kernels fall back to reading.
    """
    out: list[tuple[int, int, str]] = []
    addr = WINDOW_START
    buf = bytearray(_PMQ.size)
    while addr < WINDOW_END:
        _PMQ.pack_into(buf, 0, _PMQ.size, PMQ_COVERING_OR_NEXT, addr, *([0] * 12))
        try:
            fcntl.ioctl(maps_fd, PROCMAP_QUERY, buf, True)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                break  # no VMA at or above addr
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                return _window_maps_text(maps_fd)
            raise
        start, end, flags = _PMQ.unpack_from(buf)[3:6]
        if start >= WINDOW_END:
            break
        perms = ("r" if flags & PMQ_READABLE else "-") + ("w" if flags & PMQ_WRITABLE else "-") \
            + ("x" if flags & PMQ_EXECUTABLE else "-") + ("s" if flags & PMQ_SHARED else "p")
        out.append((start, end, perms))
        addr = end
    return out


def _window_maps_text(maps_fd: int) -> list[tuple[int, int, str]]:
    out = []
    with open(os.dup(maps_fd), "rb") as f:
        f.seek(0)
        for raw in f:
            span, perms = raw.split(b" ", 2)[:2]
            lo, hi = (int(x, 16) for x in span.split(b"-"))
            if hi > WINDOW_START and lo < WINDOW_END:
                out.append((lo, hi, perms.decode()))
    return out


def open_maps(pid: int | str = "self") -> int:
    return os.open(f"/proc/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)


class Worker:
    """The command loop of one task's process."""

    def __init__(self, chan: socket.socket, libc: Libc) -> None:
        self.chan = chan
        self.libc = libc
        # Bound to this process's mm when opened: a forked child reopens it.
        self.maps_fd = open_maps()

    def serve(self) -> NoReturn:
        while True:
            try:
                msg, fds = recv_msg(self.chan)
            except EOFError:
                # The runner went away (or closed us): nothing to report to.
                os._exit(0)
            cmd, args = msg[0], msg[1:]
            if cmd == "exit":
                send_msg(self.chan, {"ok": True})
                os._exit(0)
            if cmd == "fork":
                reply = self.do_fork(fds[0])
            else:
                for fd in fds:
                    os.close(fd)
                try:
                    reply = getattr(self, "do_" + cmd)(*args)
                except WorkerBug as exc:
                    reply = {"bug": str(exc)}
            send_msg(self.chan, reply)

    def do_hello(self) -> dict[str, Any]:
        """Report what the runner wants to verify before trusting this worker."""
        return {"pid": os.getpid(), "maps": window_maps(self.maps_fd),
                "thp_disabled": self.libc.prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1,
                "cpus": sorted(os.sched_getaffinity(0))}

    def do_fork(self, newfd: int) -> dict[str, Any]:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(newfd)
            return {"ok": False, "error": errname(exc.errno or 0)}
        if pid == 0:
            # The child: drop the parent's channel and serve the new task.
            try:
                self.chan.close()
                self.chan = socket.socket(fileno=newfd)
                os.close(self.maps_fd)
                self.maps_fd = open_maps()
                send_msg(self.chan, self.do_hello())
                self.serve()
            finally:
                os._exit(70)
        os.close(newfd)
        return {"ok": True, "pid": pid}

    def do_mmap(self, addr: int, pages: int, prot: str) -> dict[str, Any]:
        length = _check_range(addr, pages)
        got = self.libc.mmap(addr, length, PROTS[prot],
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        if got == MAP_FAILED:
            return _fail()
        if got != addr:
            # A kernel ignoring MAP_FIXED_NOREPLACE would map elsewhere.
            self.libc.munmap(got, length)
            raise WorkerBug(f"mmap at {addr:#x} landed at {got:#x}")
        return {"ok": True}

    def do_munmap(self, addr: int, pages: int) -> dict[str, Any]:
        return _ret(self.libc.munmap(addr, _check_range(addr, pages)))

    def do_mprotect(self, addr: int, pages: int, prot: str) -> dict[str, Any]:
        return _ret(self.libc.mprotect(addr, _check_range(addr, pages), PROTS[prot]))

    def do_mlock(self, addr: int, pages: int) -> dict[str, Any]:
        return _ret(self.libc.mlock(addr, _check_range(addr, pages)))

    def do_munlock(self, addr: int, pages: int) -> dict[str, Any]:
        return _ret(self.libc.munlock(addr, _check_range(addr, pages)))

    def do_madvise(self, addr: int, pages: int, advice: str) -> dict[str, Any]:
        return _ret(self.libc.madvise(addr, _check_range(addr, pages), ADVICE[advice]))

    def do_mremap(self, addr: int, pages: int, new_pages: int,
                  new_addr: int | None) -> dict[str, Any]:
        old_len = _check_range(addr, pages)
        if new_addr is None:
            _check_range(addr, new_pages)
            got = self.libc.mremap(addr, old_len, new_pages * PAGE_SIZE, 0, None)
        else:
            new_len = _check_range(new_addr, new_pages)
            got = self.libc.mremap(addr, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new_addr)
        return _fail() if got == MAP_FAILED else {"ok": True}

    def do_access(self, addr: int, pages: int, value: int | None) -> dict[str, Any]:
        """Touch the first byte of each page; ``value`` None reads, else writes it."""
        _check_range(addr, pages)
        write = value is not None
        maps = window_maps(self.maps_fd)
        starts = [m[0] for m in maps]
        values: list[int] = []
        for i in range(pages):
            a = addr + i * PAGE_SIZE
            k = bisect.bisect_right(starts, a) - 1
            # Fault check first: an unmapped page, or one the prot forbids.
            if k < 0 or a >= maps[k][1] or maps[k][2][1 if write else 0] == "-":
                reply: dict[str, Any] = {"ok": False, "error": "SIGSEGV"}
                if not write:
                    reply["values"] = values
                return reply
            if value is not None:
                ctypes.memset(a, value, 1)
            else:
                values.append(ctypes.c_ubyte.from_address(a).value)
        return {"ok": True, "values": values} if not write else {"ok": True}


def _ret(rc: int) -> dict[str, Any]:
    return _fail() if rc != 0 else {"ok": True}


def become_worker(chan: socket.socket, cpu: int) -> NoReturn:
    """Turn a freshly forked copy of the runner into a worker; never returns.

    Called in the child right after os.fork(), with SIGINT/SIGTERM blocked by
    the runner; nothing of the runner's Python state may be used here.
    """
    code = 70
    try:
        # Objects inherited from the runner must never be finalized here: a
        # file object's close() would hit a descriptor number now reused.
        gc.disable()
        keep = chan.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, (1 << 31) - 1)  # close_range(2): cheap however high
        # Ctrl-C reaches the whole process group; the runner alone decides
        # when workers end.  Children are reaped automatically (SIGCHLD
        # ignored) so a worker's exited forks leave no zombies.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        libc = Libc()
        name = ctypes.create_string_buffer(WORKER_COMM)
        libc.prctl(PR_SET_NAME, ctypes.addressof(name), 0, 0, 0)
        os.sched_setaffinity(0, {cpu})
        if libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
            raise WorkerBug("prctl(PR_SET_THP_DISABLE) failed: " + errname(ctypes.get_errno()))
        worker = Worker(chan, libc)
        send_msg(chan, worker.do_hello())
        worker.serve()
    except BaseException as exc:  # noqa: BLE001 - a worker must never return into the runner
        with contextlib.suppress(BaseException):  # stderr gone: nothing left to tell
            print(f"rmaplab kernel worker {os.getpid()}: {exc!r}", file=sys.stderr)
    finally:
        os._exit(code)
