# SPDX-License-Identifier: GPL-2.0-only
"""Trace parsing and whole-trace validation (docs/trace-format.md, versions 1 and 2).

A trace is validated completely before anything runs: a malformed line raises
TraceError naming the line and the key, and no op is executed.

Rules, checked line by line in this order (the first problem wins):

- Line numbers are physical and 1-based.  Blank lines (only space, tab, CR
  or LF: JSON's whitespace) and lines whose first other character is ``#``
  are skipped.  Any other line longer than MAX_LINE_CHARS characters is
  rejected before parsing (no valid op needs more than a few hundred).
  read_trace() streams: it never holds more than one line of at most
  MAX_LINE_BYTES, so endless input fails on its first long line.
- Every other line is one JSON object (not an array, string or number).
  ``NaN``/``Infinity``, a key repeated in any object, nesting too deep for
  the parser and integers too long to convert are errors (key None, or the
  repeated key).
- ``"op"`` must be present and name one of the ops in OP_KEYS; the key set of
  each op is fixed: an unknown key, then a missing required key, is an error.
- Values, in the key order of Op: ``task``/``child`` are strings matching
  ``[A-Za-z0-9_.-]{1,64}``; ``addr``/``new_addr`` are integers or ``"0x..."``
  strings of hex digits (either case), page-aligned (multiple of 4096);
  ``pages``/``new_pages`` are integers from 1 to MAX_PAGES (for ``swapon``
  and ``reclaim`` too); ``prot`` is in consts.PROTS, ``advice`` in
  consts.ADVICES, ``value`` an integer 0..255, ``label`` a non-empty string
  of at most MAX_LABEL_CHARS characters that UTF-8 can encode.  Booleans and
  floats are never integers.
- Ranges: ``[addr, addr + pages*4096)`` lies in the trace window
  ``[WINDOW_START, WINDOW_END)``; for ``mremap`` so does
  ``[new_addr, new_addr + new_pages*4096)``, or, without ``new_addr``, the
  in-place result ``[addr, addr + new_pages*4096)``.  An address outside the
  window is blamed on ``addr``/``new_addr``, a range running past its end on
  ``pages``/``new_pages``.
- Liveness, statically: ``spawn`` and ``fork`` (its ``child``) introduce a
  name once per trace, never reused even after ``exit``; every op's ``task``
  must be alive (introduced and not exited) at that line.

- Version 2 (V2_OP_KEYS): ``file`` (``name``, ``pages`` 0..MAX_PAGES),
  ``truncate`` (``file``, ``pages`` 0..MAX_PAGES), ``exec`` (``task``, alive);
  ``mmap`` may have ``file``, ``offset`` (0..MAX_PAGES, only with ``file``)
  and ``shared`` (a boolean); ``prot`` may be ``"rx"``.  File names follow
  the task-name pattern, are created once by ``file`` and never reused, and
  every ``file`` key names a file created earlier.  Op.v2 records the first
  version 2 key of a line (``"op"`` for a version 2 op); trace_version() and
  first_v2() read it, and refuse_version2() is how the model and the kernel
  runner decline version 2 until they implement it.

Hostile input (huge numbers, deep nesting, long lines, binary junk) gives
TraceError, never another exception.
"""

from __future__ import annotations

import codecs
import difflib
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from .consts import ADVICES, MAX_PAGES, PAGE_SIZE, PROTS, WINDOW_END, WINDOW_START
from .uapi import Advice, Prot


class TraceError(Exception):
    """A trace that does not follow docs/trace-format.md; names line and key."""

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
    prot: Prot | None = None
    advice: Advice | None = None
    value: int | None = None
    label: str | None = None
    # Version 2 (docs/trace-format.md): file names, a page offset, MAP_SHARED.
    name: str | None = None
    file: str | None = None
    offset: int | None = None
    shared: bool | None = None
    #: The first version 2 key of this line ("op" for a v2 op), None in version 1.
    v2: str | None = None

    @property
    def model_only(self) -> bool:
        return self.op == "reclaim" or (self.op == "madvise" and self.advice == "volatile")


#: Keys of each op: (required, optional), besides "op" itself.
OP_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "spawn": (("task",), ()),
    "fork": (("task", "child"), ()),
    "exit": (("task",), ()),
    "mmap": (("task", "addr", "pages", "prot"), ()),
    "munmap": (("task", "addr", "pages"), ()),
    "mprotect": (("task", "addr", "pages", "prot"), ()),
    "mremap": (("task", "addr", "pages", "new_pages"), ("new_addr",)),
    "mlock": (("task", "addr", "pages"), ()),
    "munlock": (("task", "addr", "pages"), ()),
    "madvise": (("task", "addr", "pages", "advice"), ()),
    "write": (("task", "addr", "pages", "value"), ()),
    "read": (("task", "addr", "pages"), ()),
    "swapon": (("pages",), ()),
    "swapoff": ((), ()),
    "reclaim": (("pages",), ()),
    "snapshot": (("label",), ()),
}
#: Version 2's ops, and mmap with its version 2 keys.
V2_OP_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mmap": (("task", "addr", "pages", "prot"), ("file", "offset", "shared")),
    "file": (("name", "pages"), ()),
    "truncate": (("file", "pages"), ()),
    "exec": (("task",), ()),
}
_ALL_OP_KEYS = {**OP_KEYS, **V2_OP_KEYS}
#: Ops and mmap keys that make a trace version 2; "rx" is a version 2 prot.
V2_OPS = ("file", "truncate", "exec")
V2_KEYS = ("file", "offset", "shared")

#: Longest line accepted; valid ops are far shorter, so this only stops junk.
MAX_LINE_CHARS = 65536
#: Longest snapshot label accepted.
MAX_LABEL_CHARS = 256

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEX_RE = re.compile(r"0x[0-9A-Fa-f]+")
# Values are checked in this order, so the first bad key named is stable.
_KEY_ORDER = ("task", "child", "name", "file", "addr", "pages", "new_pages", "new_addr",
              "offset", "shared", "prot", "advice", "value", "label")
_JSON_SPACE = " \t\r\n"


class _JsonProblem(ValueError):
    """Raised from inside the JSON decoder's hooks; carries the key to blame."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _clip(text: str, limit: int = 64) -> str:
    """A short, printable, ASCII form of untrusted text for messages."""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text
    shown = ascii(text[:limit])[1:-1]
    return shown[:limit] + ("..." if len(text) > limit or len(shown) > limit else "")


def _describe(value: Any) -> str:
    """Name an untrusted JSON value briefly, without printing all of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, float):
        return f"{value!r} (a number with a fraction or exponent)"
    if isinstance(value, str):
        return f'"{_clip(value, 40)}" (a string)'
    if isinstance(value, list):
        return "a JSON array"
    return "a JSON object"


def _fmt_addr(value: int) -> str:
    return hex(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit number"


def _reject_constant(name: str) -> Any:
    raise _JsonProblem(None, f"{name} is not a valid JSON number; write an integer")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonProblem(_clip(key), f'key "{_clip(key)}" appears twice; keep only one')
        obj[key] = value
    return obj


def _decode(text: str, line: int) -> Any:
    """Parse one line of JSON strictly, turning every failure into TraceError."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant)
    except _JsonProblem as exc:
        raise TraceError(line, exc.key, exc.message) from None
    except json.JSONDecodeError as exc:
        raise TraceError(line, None, f"not valid JSON ({exc.msg} at column {exc.colno}); "
                         "write one JSON object per line") from None
    except RecursionError:
        raise TraceError(line, None, "JSON nested too deeply; an op is one flat object") from None
    except ValueError as exc:  # e.g. an integer with too many digits to convert
        raise TraceError(line, None, f"not a usable JSON value ({_clip(str(exc), 60)}); "
                         "numbers in a trace are small integers") from None


def _int(obj: dict[str, Any], key: str, line: int, lo: int, hi: int) -> int:
    value = obj[key]
    if type(value) is not int or not lo <= value <= hi:
        raise TraceError(line, key, f"{key} must be an integer from {lo} to {hi}, "
                         f"got {_describe(value)}")
    return value


def _addr(obj: dict[str, Any], key: str, line: int) -> int:
    value = obj[key]
    if type(value) is int:
        addr = value
    elif isinstance(value, str) and _HEX_RE.fullmatch(value):
        addr = int(value[2:], 16)
    else:
        raise TraceError(line, key, f'{key} must be an integer or a "0x..." hex string, '
                         f"got {_describe(value)}")
    if addr % PAGE_SIZE:
        raise TraceError(line, key, f"{key} {_fmt_addr(addr)} is not page-aligned "
                         f"(multiple of {PAGE_SIZE}); round it down to "
                         f"{_fmt_addr(addr - addr % PAGE_SIZE)}")
    if not WINDOW_START <= addr < WINDOW_END:
        raise TraceError(line, key, f"{key} {_fmt_addr(addr)} is outside the trace window "
                         f"[{WINDOW_START:#x}, {WINDOW_END:#x})")
    return addr


def _check_range(line: int, addr_key: str, addr: int, pages_key: str, pages: int) -> None:
    end = addr + pages * PAGE_SIZE
    if end > WINDOW_END:
        room = (WINDOW_END - addr) // PAGE_SIZE
        raise TraceError(line, pages_key, f"range {addr:#x} + {pages} pages ends at {end:#x}, "
                         f"past the trace window end {WINDOW_END:#x}; {addr_key} "
                         f"{addr:#x} leaves room for at most {room} pages")


class _Liveness:
    """Static task-name bookkeeping: introduced once, alive until exit."""

    def __init__(self) -> None:
        self.introduced: dict[str, int] = {}  # name -> line that introduced it
        self.alive: set[str] = set()
        self.files: dict[str, int] = {}  # file name -> line that created it

    def require_alive(self, line: int, key: str, name: str) -> None:
        if name in self.alive:
            return
        if name in self.introduced:
            raise TraceError(line, key, f'task "{name}" (introduced at line '
                             f"{self.introduced[name]}) has exited; name a live task")
        raise TraceError(line, key, f'task "{name}" does not exist here; '
                         "introduce it earlier with spawn or fork")

    def introduce(self, line: int, key: str, name: str) -> None:
        if name in self.introduced:
            raise TraceError(line, key, f'task name "{name}" was already used at line '
                             f"{self.introduced[name]}; names are never reused, pick a new one")
        self.introduced[name] = line
        self.alive.add(name)

    def create_file(self, line: int, name: str) -> None:
        if name in self.files:
            raise TraceError(line, "name", f'file name "{name}" was already created at line '
                             f"{self.files[name]}; names are never reused, pick a new one")
        self.files[name] = line

    def require_file(self, line: int, name: str) -> None:
        if name not in self.files:
            raise TraceError(line, "file", f'file "{name}" does not exist here; '
                             'create it earlier with {"op": "file", "name": ...}')


def _parse_object(obj: dict[str, Any], line: int, live: _Liveness) -> Op:
    if "op" not in obj:
        raise TraceError(line, "op", 'missing "op"; every line needs one of: '
                         + ", ".join(_ALL_OP_KEYS))
    name = obj["op"]
    if not isinstance(name, str):
        raise TraceError(line, "op", f"op must be a string, got {_describe(name)}")
    if name not in _ALL_OP_KEYS:
        near = difflib.get_close_matches(name[:64], _ALL_OP_KEYS, n=1)
        hint = f'did you mean "{near[0]}"? ' if near else ""
        raise TraceError(line, "op", f'unknown op "{_clip(name)}"; {hint}'
                         "ops are: " + ", ".join(_ALL_OP_KEYS))
    required, optional = _ALL_OP_KEYS[name]
    allowed = required + optional
    for key in obj:
        if key != "op" and key not in allowed:
            near = difflib.get_close_matches(key[:64], allowed, n=1)
            hint = f'did you mean "{near[0]}"? ' if near else ""
            raise TraceError(line, _clip(key), f'unknown key "{_clip(key)}" for {name}; {hint}'
                             f"its keys are: {', '.join(allowed) or '(none)'}")
    for key in required:
        if key not in obj:
            raise TraceError(line, key, f"{name} needs {key}; its keys are: "
                             + ", ".join(allowed))

    fields: dict[str, Any] = {}
    for key in _KEY_ORDER:
        if key not in obj:
            continue
        value = obj[key]
        if key in ("task", "child", "name", "file"):
            if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
                raise TraceError(line, key, f"{key} must be a name of 1 to 64 characters "
                                 f"from A-Z a-z 0-9 _ . -, got {_describe(value)}")
            fields[key] = sys.intern(value)  # one string per name, not per op
        elif key in ("addr", "new_addr"):
            fields[key] = _addr(obj, key, line)
        elif key == "pages" and name in ("file", "truncate"):
            fields[key] = _int(obj, key, line, 0, MAX_PAGES)
        elif key in ("pages", "new_pages"):
            fields[key] = _int(obj, key, line, 1, MAX_PAGES)
        elif key == "offset":
            if "file" not in obj:
                raise TraceError(line, key, "offset is a page offset into a file; "
                                 "it needs file (an anonymous mapping has none)")
            fields[key] = _int(obj, key, line, 0, MAX_PAGES)
        elif key == "shared":
            if not isinstance(value, bool):
                raise TraceError(line, key, f"shared must be true or false, "
                                 f"got {_describe(value)}")
            fields[key] = value
        elif key == "value":
            fields[key] = _int(obj, key, line, 0, 255)
        elif key == "prot":
            if value == "rx":  # version 2; the model and runner refuse it for now
                fields[key] = cast(Prot, "rx")
            elif not isinstance(value, str) or value not in PROTS:
                raise TraceError(line, key, f"prot must be one of {', '.join(PROTS)} "
                                 f'(or "rx" in version 2), got {_describe(value)}')
            else:
                fields[key] = sys.intern(value)
        elif key == "advice":
            if not isinstance(value, str) or value not in ADVICES:
                raise TraceError(line, key, f"advice must be one of {', '.join(ADVICES)}, "
                                 f"got {_describe(value)}")
            fields[key] = sys.intern(value)
        elif key == "label":
            fields[key] = _label(value, line)

    if "addr" in fields and "pages" in fields:
        _check_range(line, "addr", fields["addr"], "pages", fields["pages"])
    if name == "mremap":
        base_key = "new_addr" if "new_addr" in fields else "addr"
        _check_range(line, base_key, fields[base_key], "new_pages", fields["new_pages"])

    # Liveness last: a line is judged on its own form before its context.
    if name == "file":
        live.create_file(line, fields["name"])
    elif "file" in fields:
        live.require_file(line, fields["file"])
    if name == "spawn":
        live.introduce(line, "task", fields["task"])
    elif "task" in fields:
        live.require_alive(line, "task", fields["task"])
        if name == "fork":
            live.introduce(line, "child", fields["child"])
        elif name == "exit":
            live.alive.discard(fields["task"])
    v2 = "op" if name in V2_OPS else next((k for k in V2_KEYS if k in fields), None)
    if v2 is None and fields.get("prot") == "rx":
        v2 = "prot"
    return Op(line=line, op=name, v2=v2, **fields)


def _label(value: Any, line: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_LABEL_CHARS:
        raise TraceError(line, "label", f"label must be a string of 1 to {MAX_LABEL_CHARS} "
                         f"characters, got {_describe(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate escape (\ud800) cannot be written back out as UTF-8.
        raise TraceError(line, "label", "label holds an unpaired surrogate (\\ud800-\\udfff); "
                         "use whole characters") from None
    return value


def _is_skipped(text: str) -> bool:
    stripped = text.lstrip(_JSON_SPACE)
    return not stripped or stripped.startswith("#")


class _Parser:
    """Whole-trace validation, one line at a time: the ops so far and who is alive."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.live = _Liveness()

    def feed(self, number: int, text: str) -> None:
        if _is_skipped(text):
            return
        if len(text) > MAX_LINE_CHARS:
            raise TraceError(number, None, f"line has {len(text)} characters, more than "
                             f"{MAX_LINE_CHARS}; an op is one short JSON object")
        obj = _decode(text, number)
        if not isinstance(obj, dict):
            raise TraceError(number, None, f"line must be a JSON object with \"op\", "
                             f"got {_describe(obj)}")
        self.ops.append(_parse_object(obj, number, self.live))


def parse_trace_lines(lines: Iterable[str]) -> list[Op]:
    """Validate a whole trace given as lines; return its ops or raise TraceError.

    Cost: one pass over the lines; no op runs.
    """
    parser = _Parser()
    for number, raw in enumerate(lines, start=1):
        text = raw
        if isinstance(raw, (bytes, bytearray)):
            try:
                text = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise TraceError(number, None, "line is not valid UTF-8; "
                                 "save the trace as UTF-8") from None
        if not isinstance(text, str):
            raise TraceError(number, None, f"line is {type(text).__name__}, not text")
        parser.feed(number, text)
    return parser.ops


#: Bytes read at a time; a line is held whole only up to MAX_LINE_BYTES.
_BLOCK = 1 << 20
#: UTF-8 takes at most 4 bytes a character: a longer line is too long for certain.
MAX_LINE_BYTES = 4 * MAX_LINE_CHARS + 1
_NEWLINES = re.compile(rb"\n+")
_BYTE_SPACE = b" \t\r"


def _not_utf8(number: int, exc: UnicodeDecodeError, data: bytes) -> TraceError:
    return TraceError(number, None, f"byte {data[exc.start]:#04x} is not valid UTF-8; "
                      "save the trace as UTF-8")


def _skip_long_line(stream: BinaryIO, number: int, data: bytes) -> bytes:
    """Read past a line longer than MAX_LINE_BYTES, which only a blank or comment
    line may be, without holding it; return what follows its newline."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    blank = True
    while True:
        nl = data.find(b"\n")
        part = data if nl < 0 else data[:nl]
        try:
            decoder.decode(part, final=nl >= 0 or not part)
        except UnicodeDecodeError as exc:
            raise _not_utf8(number, exc, part) from None
        if blank:
            rest = part.lstrip(_BYTE_SPACE)
            if rest and not rest.startswith(b"#"):
                raise TraceError(number, None, f"line has more than {MAX_LINE_CHARS} "
                                 "characters; an op is one short JSON object")
            blank = not rest
        if nl >= 0:
            return data[nl + 1:]
        if not part:
            return b""
        data = stream.read(_BLOCK)


def read_trace(stream: BinaryIO, name: str = "trace") -> list[Op]:
    """Validate a whole trace read from a binary stream (a file, a pipe, stdin);
    return its ops or raise TraceError.

    The stream is read in blocks, never whole: a line is held only up to
    MAX_LINE_BYTES, and runs of blank lines cost no memory, so endless or
    huge input (``/dev/zero``) fails fast on its first line. Lines end at LF
    only, so line numbers match what editors and ``wc -l`` count.
    """
    parser = _Parser()
    number, buf, pos = 1, b"", 0
    try:
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                rest = buf[pos:]
                if len(rest) > MAX_LINE_BYTES:
                    buf, pos = _skip_long_line(stream, number, rest), 0
                    number += 1
                    continue
                block = stream.read(_BLOCK)
                if not block:
                    if rest:
                        _feed_bytes(parser, number, rest)
                    return parser.ops
                buf, pos = rest + block, 0
                continue
            if nl == pos:  # a run of empty lines, skipped at C speed
                run = _NEWLINES.match(buf, pos)
                assert run is not None
                number += run.end() - pos
                pos = run.end()
                continue
            _feed_bytes(parser, number, buf[pos:nl])
            number, pos = number + 1, nl + 1
    except OSError as exc:
        raise TraceError(number, None, f"cannot read {name}: {exc.strerror or exc}") from None


def _feed_bytes(parser: _Parser, number: int, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(number, exc, raw) from None
    parser.feed(number, text)


def load_trace(path: str | os.PathLike[str]) -> list[Op]:
    """Read a UTF-8 trace file and validate it whole; raise TraceError if unusable.

    An unreadable file is reported at line 0, bytes that are not UTF-8 at
    their line. The file is streamed (read_trace), never read whole.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the OSError split
    except OSError as exc:
        raise TraceError(0, None, f"cannot read trace {os.fspath(path)!s}: "
                         f"{exc.strerror or exc}") from None
    except (TypeError, ValueError) as exc:
        raise TraceError(0, None, f"not a usable trace path: {_clip(str(exc), 80)}") from None
    with f:
        return read_trace(f, name=os.fspath(path))


def first_v2(ops: Iterable[Op]) -> Op | None:
    """The first op of a version 2 trace that uses version 2; None in version 1."""
    return next((op for op in ops if op.v2 is not None), None)


def trace_version(ops: Iterable[Op]) -> int:
    """2 if any op or key of version 2 appears (even "shared": false), else 1."""
    return 1 if first_v2(ops) is None else 2


def refuse_version2(ops: Iterable[Op], what: str = "modelled") -> None:
    """Raise TraceError at the first version 2 line and key: not implemented yet."""
    op = first_v2(ops)
    if op is not None:
        raise TraceError(op.line, op.v2, "version 2 of the trace format (files, shared "
                         f"memory, exec) is not {what} yet (docs/trace-format.md)")


__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_LINE_BYTES",
    "MAX_LINE_CHARS",
    "OP_KEYS",
    "V2_KEYS",
    "V2_OPS",
    "Op",
    "TraceError",
    "first_v2",
    "load_trace",
    "parse_trace_lines",
    "read_trace",
    "refuse_version2",
    "trace_version",
]
