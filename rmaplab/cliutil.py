# SPDX-License-Identifier: GPL-2.0-only
"""What every ``rmaplab`` verb shares (docs/cli.md): ``-`` for stdin and
stdout, outputs checked before anything runs and renamed into place when
done, one exit status per way a run can end, a quiet exit when a reader
closes the pipe early, the scheme option types, ``--json`` printing and the
``-q/--quiet``/``--no-progress`` options.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click
from click.shell_completion import CompletionItem

from .budget import BudgetError, parse_size
from .eras import ERAS
from .rmap import SCHEMES, VARIANTS
from .trace import Op, TraceError, load_trace, read_trace

EXIT_OK, EXIT_DIFFER, EXIT_INVALID, EXIT_CANNOT_RUN, EXIT_NONDETERMINISTIC = 0, 1, 2, 3, 4
EXIT_INTERNAL = 70
#: What a shell reports for a process that SIGPIPE ended: a reader went away.
EXIT_PIPE = 128 + signal.SIGPIPE
#: Where the verbs, conventions and exit statuses are written down.
DOCS = "docs/cli.md"
STDIO = "-"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A user's mistake or the environment's, said in one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def say(verb: str, message: str) -> None:
    """One line on stderr, prefixed by the verb; never fails (stderr may be a closed pipe)."""
    with suppress(OSError, ValueError):
        click.echo(f"rmaplab {verb}: {message}", err=True)


def write_error(name: str, exc: OSError) -> BaseException:
    """The exception a failed write of output `name` becomes."""
    if exc.errno == errno.EPIPE:
        return BrokenPipeError(errno.EPIPE, "reader closed the pipe")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CliError(f"no space left writing {name}")
    return CliError(f"cannot write {name}: {exc.strerror or exc}")


def _pipe_closed() -> int:
    # Later writes (and the interpreter's final flush) go nowhere, silently.
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_PIPE


Handlers = Mapping[type[BaseException], Callable[[BaseException], int]]


def status_for(verb: str, exc: BaseException, handlers: Handlers | None = None) -> int:
    """Say how the run ended (if there is anything to say) and return its exit status."""
    for kind, handle in (handlers or {}).items():
        if isinstance(exc, kind):
            return handle(exc)
    if isinstance(exc, BrokenPipeError):
        return _pipe_closed()
    if isinstance(exc, CliError):
        say(verb, exc.message)
        return exc.status
    if isinstance(exc, TraceError):
        say(verb, exc.message if exc.line == 0 else f"invalid trace: {exc}")
        return EXIT_INVALID
    if isinstance(exc, KeyboardInterrupt):
        say(verb, "interrupted")
        return 128 + signal.SIGINT
    if isinstance(exc, OSError):
        if exc.errno == errno.EPIPE:
            return _pipe_closed()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            say(verb, f"no space left writing {exc.filename or 'the output'}")
        else:
            where = f"{exc.filename}: " if exc.filename else ""
            say(verb, f"{where}{exc.strerror or exc}")
        return EXIT_INVALID
    if isinstance(exc, MemoryError):
        say(verb, "ran out of host memory; try a smaller trace or grid")
        return EXIT_INVALID
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" [{Path(tb[-1].filename).name}:{tb[-1].lineno}]" if tb else ""
    say(verb, f"internal error (a bug in rmaplab, please report it): "
        f"{type(exc).__name__}: {exc}{where}")
    return EXIT_INTERNAL


def guard(verb: str, body: Callable[[], int | None], handlers: Handlers | None = None,
          ) -> NoReturn:
    """Run a verb's body and exit with the status of how it ended (docs/cli.md)."""
    try:
        code = body() or EXIT_OK
        sys.stdout.flush()
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
            SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every way out gets its status
        code = status_for(verb, exc, handlers)
    sys.exit(code)


# -- options -----------------------------------------------------------------

#: ``--scheme``: one of rmaplab.rmap.SCHEMES, or a variant buggy on purpose
#: (rmaplab.rmap.VARIANTS, docs/posted.md) by its name.
SCHEME = click.Choice([*SCHEMES, *VARIANTS])


class SchemeList(click.ParamType):
    """``--schemes``: a comma list of rmaplab.rmap.SCHEMES (and variants buggy on
    purpose, rmaplab.rmap.VARIANTS, named one by one), or ``all`` (the schemes only)."""

    name = "schemes"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "LIST"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        if value == "all":
            return SCHEMES
        names = [s.strip() for s in str(value).split(",") if s.strip()]
        for name in names:
            if name not in SCHEMES and name not in VARIANTS:
                self.fail(f"{name!r} is not a scheme; give a comma list of "
                          f"{', '.join(SCHEMES)} (or the variants {', '.join(VARIANTS)}), "
                          "or 'all'", param, ctx)
        if not names:
            self.fail("no scheme given; give a comma list of schemes, or 'all'", param, ctx)
        return tuple(dict.fromkeys(names))

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        done, _, last = incomplete.rpartition(",")
        prefix = done + "," if done else ""
        names = [*SCHEMES, *VARIANTS, "all"] if not done else [*SCHEMES, *VARIANTS]
        return [CompletionItem(prefix + n) for n in names if n.startswith(last)]


def quiet_options(f: F) -> F:
    """``-q/--quiet`` and ``--no-progress``, as every verb has them."""
    f = click.option("--no-progress", is_flag=True,
                     help="No progress bar (one is drawn only on a terminal).")(f)
    return click.option("-q", "--quiet", is_flag=True,
                        help="Print nothing but errors and what was asked for on stdout "
                             "(no progress, no summary).")(f)


def _max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--max-memory SIZE as bytes (a bad size: click's usage error, status 2)."""
    try:
        return parse_size(value)
    except BudgetError as e:
        raise click.BadParameter(str(e).removeprefix(f"--max-memory {value!r}: ")) from None


def max_memory_option(what: str) -> Callable[[F], F]:
    """``--max-memory SIZE``: the host memory `what` may use (rmaplab.budget)."""
    return click.option("--max-memory", "max_memory", default=None, metavar="SIZE",
                        callback=_max_memory,
                        help=f"Host memory {what} may use (e.g. 2G; default: what the machine "
                             "has available); bigger is refused before anything runs.")


def era_option(f: F) -> F:
    """``--era today|historical``: the kernel rules the model runs on (docs/eras.md)."""
    return click.option("--era", type=click.Choice(ERAS), default="today", show_default=True,
                        help="today: every scheme on 6.18's VMA, COW and reclaim rules; "
                             "historical: each scheme on its own kernel's (docs/eras.md).")(f)


def json_option(f: F) -> F:
    """``--json``: the verb's table as JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the table as JSON on stdout instead.")(f)


def _plain(value: Any) -> Any:
    """A value JSON can hold exactly: numpy scalars as Python ones, NaN and inf as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


def print_json(obj: Any) -> None:
    """Print obj as one strict JSON document on stdout."""
    sys.stdout.write(json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n")


# -- inputs --------------------------------------------------------------------

def read_trace_arg(name: str) -> list[Op]:
    """The validated ops of the trace named on the command line (``-``: stdin);
    an invalid or unreadable trace is a CliError naming it, the line and the key."""
    try:
        if name == STDIO:
            return read_trace(sys.stdin.buffer, name="stdin")
        return load_trace(name)
    except TraceError as exc:
        shown = "(stdin)" if name == STDIO else name
        if exc.line == 0:
            raise CliError(exc.message) from None
        raise CliError(f"invalid trace {shown}: {exc}") from None


# -- outputs ---------------------------------------------------------------------

def _null_rdev() -> int:
    return os.stat(os.devnull).st_rdev


def _is_null(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == _null_rdev()


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class Output:
    """One output of a run: ``-`` (stdout), a device or FIFO (written in place), or a
    file (written to a temporary file beside it, renamed into place when done)."""

    def __init__(self, option: str, name: str, binary: bool = False) -> None:
        self.option = option
        self.name = name
        self.binary = binary
        self.file: IO[Any] | None = None
        self._tmp: str | None = None
        self._target: str | None = None

    @property
    def label(self) -> str:
        return "stdout" if self.name == STDIO else self.name

    def check(self) -> None:
        """Refuse a path that cannot be written, before anything is opened."""
        if self.name == STDIO:
            return
        st = _stat(self.name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise CliError(f"{self.option} {self.name}: is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            if not os.access(self.name, os.W_OK):
                raise CliError(f"{self.option} {self.name}: cannot write it (permission denied)")
            return
        parent = os.path.dirname(os.path.realpath(self.name)) or "."
        if not os.path.isdir(parent):
            raise CliError(f"{self.option} {self.name}: no such directory {parent}")
        if st is not None and not os.access(self.name, os.W_OK):
            raise CliError(f"{self.option} {self.name}: cannot write it (permission denied)")
        if st is None and not os.access(parent, os.W_OK | os.X_OK):
            raise CliError(f"{self.option} {self.name}: cannot create a file in {parent} "
                           "(permission denied)")

    def open(self) -> None:
        if self.name == STDIO:
            self.file = sys.stdout.buffer if self.binary else sys.stdout
            return
        st = _stat(self.name)
        target = os.path.realpath(self.name)
        parent = os.path.dirname(target)
        mode = "wb" if self.binary else "w"
        enc = None if self.binary else "utf-8"
        try:
            if (st is not None and not stat.S_ISREG(st.st_mode)) or \
                    self.name.startswith(("/dev/", "/proc/")) or \
                    not os.access(parent, os.W_OK | os.X_OK):
                # a device, a FIFO, /dev/stdout (whatever it points at) cannot be
                # renamed onto: write it as is; /dev/stdout and the like through the
                # descriptor itself, as reopening a file there would truncate it
                fd = _fd_path(self.name)
                self.file = (os.fdopen(os.dup(fd), mode, encoding=enc) if fd is not None
                             else open(self.name, mode, encoding=enc))  # noqa: SIM115
                return
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(target)}.",
                                       suffix=".tmp")
            self._tmp, self._target = tmp, target
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
            self.file = os.fdopen(fd, mode, encoding=enc)
        except OSError as exc:
            raise write_error(self.label, exc) from None

    def write(self, data: Any) -> None:
        assert self.file is not None
        try:
            self.file.write(data)
        except OSError as exc:
            raise write_error(self.label, exc) from None

    def flush(self) -> None:
        if self.file is not None:
            try:
                self.file.flush()
            except OSError as exc:
                raise write_error(self.label, exc) from None

    def finish(self) -> None:
        """Flush; close a file and rename it into place."""
        if self.file is None:
            return
        try:
            self.file.flush()
            if self.name != STDIO:
                self.file.close()
            if self._tmp is not None and self._target is not None:
                os.replace(self._tmp, self._target)
                self._tmp = None
        except OSError as exc:
            raise write_error(self.label, exc) from None
        finally:
            self.file = None

    def discard(self, keep_as: str | None = None) -> str | None:
        """Drop what was written to a temporary file (or keep it under `keep_as`)."""
        if self.file is not None and self.name != STDIO:
            with suppress(OSError):
                self.file.close()
        self.file = None
        if self._tmp is None:
            return None
        tmp, self._tmp = self._tmp, None
        try:
            if keep_as is not None:
                os.replace(tmp, keep_as)
                return keep_as
            os.unlink(tmp)
        except OSError:
            pass
        return None


def _fd_path(name: str) -> int | None:
    """The descriptor a /dev/stdout, /dev/stderr or /dev/fd/N path names, or None."""
    named = {"/dev/stdout": 1, "/dev/stderr": 2}.get(name)
    if named is not None:
        return named
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Files:
    """The inputs and outputs of one run, checked together before any output is
    opened: no output may be an input or another output (two ``-`` included)."""

    def __init__(self) -> None:
        self.inputs: list[tuple[str, str]] = []
        self.outputs: list[Output] = []
        self.kept: list[str] = []

    def input(self, option: str, name: str) -> str:
        self.inputs.append((option, name))
        return name

    def output(self, option: str, name: str | os.PathLike[str], binary: bool = False,
               ) -> Output:
        out = Output(option, os.fspath(name), binary)
        self.outputs.append(out)
        return out

    def check(self) -> None:
        """Refuse, before anything runs, outputs that would lose or mix data."""
        seen: dict[tuple[int, int] | str, str] = {}
        for out in self.outputs:
            what = f"{out.option} {out.name}"
            out.check()
            if out.name == STDIO:
                if "-" in seen:
                    raise CliError(f"{seen['-']} and {what} both write to stdout; "
                                   "send one of them to a file")
                seen["-"] = what
                st = _fstat(1)
            else:
                st = _stat(out.name)
            key: tuple[int, int] | str | None
            if st is None:
                key = os.path.realpath(out.name)
            else:
                key = None if _is_null(st) else (st.st_dev, st.st_ino)
            if key is None:
                continue
            if key in seen:
                raise CliError(f"{seen[key]} and {what} are the same file; "
                               "give each output its own")
            seen[key] = what
        for option, name in self.inputs:
            st = _fstat(0) if name == STDIO else _stat(name)
            if st is None or not stat.S_ISREG(st.st_mode):
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                shown = "(stdin)" if name == STDIO else name
                raise CliError(f"{seen[ident]} is the input {option} {shown}; "
                               "writing it would destroy it: write elsewhere")

    @contextmanager
    def opened(self, keep_partial: Callable[[BaseException], bool] | None = None,
               ) -> Iterator[Files]:
        """Open every output; on success rename each into place, on failure drop them
        (or, when keep_partial(exc) says so, keep each as FILE.partial: self.kept)."""
        try:
            for out in self.outputs:
                out.open()
            yield self
            for out in self.outputs:
                out.flush()
            for out in self.outputs:
                out.finish()
        except BaseException as exc:
            keep = keep_partial is not None and keep_partial(exc)
            for out in self.outputs:
                kept = out.discard(out.name + ".partial" if keep else None)
                if kept:
                    self.kept.append(kept)
            raise


def _fstat(fd: int) -> os.stat_result | None:
    try:
        return os.fstat(fd)
    except OSError:
        return None


@contextmanager
def output_path(option: str, name: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `name` for a library call that writes a whole file;
    renamed onto `name` when the call returns, removed if it fails."""
    out = Output(option, os.fspath(name), binary=True)
    if out.name == STDIO:  # made aside, then copied to stdout
        with tempfile.TemporaryDirectory(prefix="rmaplab-") as tmpdir:
            spool = Path(tmpdir) / "out"
            yield spool
            with open(spool, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return
    out.check()
    out.open()
    assert out.file is not None
    if out._tmp is None:  # a device: the call writes it directly
        out.file.close()
        out.file = None
        try:
            yield Path(out.name)
        except OSError as exc:
            raise write_error(out.label, exc) from None
        return
    out.file.close()
    tmp = out._tmp
    try:
        yield Path(tmp)
        os.replace(tmp, out._target or out.name)
        out._tmp = None
    except OSError as exc:
        raise write_error(out.label, exc) from None
    finally:
        if out._tmp is not None:
            with suppress(OSError):
                os.unlink(out._tmp)
