# SPDX-License-Identifier: GPL-2.0-only
"""Tests of trace parsing and whole-trace validation (rmaplab.trace)."""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rmaplab.consts import ADVICES, MAX_PAGES, PAGE_SIZE, PROTS, WINDOW_END, WINDOW_START
from rmaplab.trace import OP_KEYS, Op, TraceError, load_trace, parse_trace_lines

A = WINDOW_START
SPAWN = '{"op": "spawn", "task": "a"}'


def j(**obj: Any) -> str:
    return json.dumps(obj)


def err(lines: list[str]) -> TraceError:
    with pytest.raises(TraceError) as info:
        parse_trace_lines(lines)
    return info.value


def bad(line: str, *, key: str | None, prefix: tuple[str, ...] = (SPAWN,)) -> TraceError:
    """The error for `line` after `prefix`; checks it names that line and `key`."""
    e = err([*prefix, line])
    assert (e.line, e.key) == (len(prefix) + 1, key), str(e)
    assert f"line {e.line}" in str(e)
    return e


# One valid line per op, with task "a" alive (and "b" a fresh name).
VALID: dict[str, dict[str, Any]] = {
    "spawn": {"op": "spawn", "task": "b"},
    "fork": {"op": "fork", "task": "a", "child": "b"},
    "exit": {"op": "exit", "task": "a"},
    "mmap": {"op": "mmap", "task": "a", "addr": hex(A), "pages": 4, "prot": "rw"},
    "munmap": {"op": "munmap", "task": "a", "addr": A, "pages": 4},
    "mprotect": {"op": "mprotect", "task": "a", "addr": hex(A), "pages": 4, "prot": "r"},
    "mremap": {"op": "mremap", "task": "a", "addr": hex(A), "pages": 4, "new_pages": 8,
               "new_addr": hex(A + 64 * PAGE_SIZE)},
    "mlock": {"op": "mlock", "task": "a", "addr": hex(A), "pages": 4},
    "munlock": {"op": "munlock", "task": "a", "addr": hex(A), "pages": 4},
    "madvise": {"op": "madvise", "task": "a", "addr": hex(A), "pages": 4, "advice": "free"},
    "write": {"op": "write", "task": "a", "addr": hex(A), "pages": 4, "value": 7},
    "read": {"op": "read", "task": "a", "addr": hex(A), "pages": 4},
    "swapon": {"op": "swapon", "pages": 256},
    "swapoff": {"op": "swapoff"},
    "reclaim": {"op": "reclaim", "pages": 32},
    "snapshot": {"op": "snapshot", "label": "x"},
}


# -- what is accepted ----------------------------------------------------------

def test_every_op_valid_and_parsed() -> None:
    assert set(VALID) == set(OP_KEYS)
    for name, obj in VALID.items():
        ops = parse_trace_lines([SPAWN, json.dumps(obj)])
        assert ops[1].op == name and ops[1].line == 2
    mremap = parse_trace_lines([SPAWN, json.dumps(VALID["mremap"])])[1]
    assert mremap == Op(line=2, op="mremap", task="a", addr=A, pages=4, new_pages=8,
                        new_addr=A + 64 * PAGE_SIZE)


def test_optional_new_addr() -> None:
    op = parse_trace_lines([SPAWN, j(op="mremap", task="a", addr=A, pages=1, new_pages=2)])[1]
    assert op.new_addr is None and op.new_pages == 2


def test_model_only() -> None:
    ops = parse_trace_lines([SPAWN, j(op="reclaim", pages=1), j(**{**VALID["madvise"],
                             "advice": "volatile"}), json.dumps(VALID["madvise"])])
    assert [o.model_only for o in ops] == [False, True, True, False]


def test_blank_and_comment_lines_skipped_with_physical_numbers() -> None:
    lines = ["", "   ", "# a comment", "  \t# indented comment", SPAWN, "\r",
             '{"op": "nope"}']
    assert err(lines).line == 7
    ops = parse_trace_lines(lines[:6])
    assert [o.line for o in ops] == [5]


def test_empty_trace() -> None:
    assert parse_trace_lines([]) == []


def test_hex_digits_any_case_and_ints() -> None:
    for addr in (hex(A).upper().replace("0X", "0x"), "0x0000" + hex(A)[2:], A):
        op = parse_trace_lines([SPAWN, j(op="read", task="a", addr=addr, pages=1)])[1]
        assert op.addr == A


def test_limits_accepted() -> None:
    parse_trace_lines([
        SPAWN, j(op="read", task="a", addr=A, pages=MAX_PAGES),
        j(op="write", task="a", addr=WINDOW_END - PAGE_SIZE, pages=1, value=255),
        j(op="write", task="a", addr=A, pages=1, value=0),
        j(op="swapon", pages=MAX_PAGES), j(op="reclaim", pages=MAX_PAGES),
        j(op="snapshot", label="x" * 256), j(op="spawn", task="A" * 64),
        j(op="fork", task="a", child="z_.-9"),
    ])


# -- JSON shape ----------------------------------------------------------------

@pytest.mark.parametrize("line", ["{", "not json", '{"op": "spawn", "task": "a"} x', "\x00"])
def test_not_json(line: str) -> None:
    assert "JSON" in bad(line, key=None).message


@pytest.mark.parametrize("line", ["[]", "3", '"spawn"', "null", "true"])
def test_not_an_object(line: str) -> None:
    assert "JSON object" in bad(line, key=None).message


def test_missing_op() -> None:
    assert "needs one of" in bad(j(task="a"), key="op").message


def test_op_not_a_string() -> None:
    bad(j(op=3), key="op")


def test_unknown_op_suggests() -> None:
    assert 'did you mean "mmap"' in bad(j(op="mmapp", task="a"), key="op").message


def test_unknown_key_names_it() -> None:
    e = bad(j(op="read", task="a", adr=A, pages=1), key="adr")
    assert 'did you mean "addr"' in e.message
    bad(j(op="swapoff", pages=1), key="pages")
    bad(j(op="read", task="a", addr=A, pages=1, new_addr=A), key="new_addr")


@pytest.mark.parametrize("name", sorted(OP_KEYS))
def test_missing_required_key(name: str) -> None:
    required, _ = OP_KEYS[name]
    for key in required:
        obj = {k: v for k, v in VALID[name].items() if k != key}
        bad(json.dumps(obj), key=key)


def test_duplicate_key() -> None:
    e = bad('{"op": "read", "task": "a", "addr": 1, "addr": 2, "pages": 1}', key="addr")
    assert "twice" in e.message


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity(const: str) -> None:
    bad(f'{{"op": "swapon", "pages": {const}}}', key=None)


# -- types ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, 1.0, 1e3, "4", None, [1], {"a": 1}])
def test_pages_must_be_int(value: Any) -> None:
    bad(j(op="read", task="a", addr=A, pages=value), key="pages")


@pytest.mark.parametrize("value", [True, 1.5, "7", None])
def test_value_must_be_int(value: Any) -> None:
    bad(j(op="write", task="a", addr=A, pages=1, value=value), key="value")


@pytest.mark.parametrize("addr", [True, float(A), "0X" + hex(A)[2:], "0x", hex(A) + " ",
                                  " " + hex(A), "0x1_000", str(A), "-0x1000", "0xg",
                                  None, [A], "0x" + "\u0661"])
def test_addr_form(addr: Any) -> None:
    e = bad(j(op="read", task="a", addr=addr, pages=1), key="addr")
    assert '"0x..."' in e.message
    bad(j(op="mremap", task="a", addr=A, pages=1, new_pages=1, new_addr=addr), key="new_addr")


# -- ranges of values ----------------------------------------------------------

@pytest.mark.parametrize("pages", [0, -1, MAX_PAGES + 1, 2**200])
def test_pages_range(pages: int) -> None:
    e = bad(j(op="read", task="a", addr=A, pages=pages), key="pages")
    assert f"from 1 to {MAX_PAGES}" in e.message
    bad(j(op="mremap", task="a", addr=A, pages=1, new_pages=pages), key="new_pages")
    bad(j(op="swapon", pages=pages), key="pages")
    bad(j(op="reclaim", pages=pages), key="pages")


@pytest.mark.parametrize("value", [-1, 256, 10**30])
def test_value_range(value: int) -> None:
    assert "0 to 255" in bad(j(op="write", task="a", addr=A, pages=1, value=value),
                             key="value").message


@pytest.mark.parametrize("prot", ["RW", "rwx", "", "w", 1])
def test_prot(prot: Any) -> None:
    e = bad(j(op="mmap", task="a", addr=A, pages=1, prot=prot), key="prot")
    assert all(p in e.message for p in PROTS)
    bad(j(op="mprotect", task="a", addr=A, pages=1, prot=prot), key="prot")


@pytest.mark.parametrize("advice", ["DONTNEED", "hugepage", "", None])
def test_advice(advice: Any) -> None:
    e = bad(j(op="madvise", task="a", addr=A, pages=1, advice=advice), key="advice")
    assert all(a in e.message for a in ADVICES)


@pytest.mark.parametrize("name", ["", "a" * 65, "a b", "\u00e4", "a\n", "a/b", 3, None])
def test_task_names(name: Any) -> None:
    bad(j(op="spawn", task=name), key="task")
    bad(j(op="fork", task="a", child=name), key="child")
    bad(j(op="read", task=name, addr=A, pages=1), key="task")


@pytest.mark.parametrize("label", ["", "x" * 257, 3, None, ["x"], "\ud800"])
def test_label(label: Any) -> None:
    bad(j(op="snapshot", label=label), key="label")


# -- addresses -----------------------------------------------------------------

def test_misaligned() -> None:
    e = bad(j(op="read", task="a", addr=hex(A + 1), pages=1), key="addr")
    assert "not page-aligned (multiple of 4096)" in e.message and hex(A) in e.message
    assert "not page-aligned" in bad(j(op="read", task="a", addr=0x1001, pages=1),
                                     key="addr").message
    bad(j(op="mremap", task="a", addr=A, pages=1, new_pages=1, new_addr=A + 8), key="new_addr")


@pytest.mark.parametrize("addr", [0, A - PAGE_SIZE, WINDOW_END, -PAGE_SIZE, 2**80])
def test_outside_window(addr: int) -> None:
    assert "outside the trace window" in bad(j(op="read", task="a", addr=addr, pages=1),
                                             key="addr").message
    bad(j(op="mremap", task="a", addr=A, pages=1, new_pages=1, new_addr=addr), key="new_addr")


def test_range_past_window_end() -> None:
    last = WINDOW_END - PAGE_SIZE
    e = bad(j(op="read", task="a", addr=last, pages=2), key="pages")
    assert "at most 1 pages" in e.message
    bad(j(op="mremap", task="a", addr=A, pages=1, new_pages=2, new_addr=last), key="new_pages")
    # In place, the grown range starts at addr.
    bad(j(op="mremap", task="a", addr=last, pages=1, new_pages=2), key="new_pages")
    parse_trace_lines([SPAWN, j(op="mremap", task="a", addr=last, pages=1, new_pages=1)])


# -- liveness ------------------------------------------------------------------

def test_unknown_task() -> None:
    assert "spawn or fork" in bad(j(op="read", task="b", addr=A, pages=1), key="task").message
    bad(j(op="fork", task="b", child="c"), key="task")


def test_exited_task() -> None:
    e = bad(j(op="read", task="a", addr=A, pages=1), key="task", prefix=(SPAWN, j(op="exit",
                                                                                task="a")))
    assert "exited" in e.message and "line 1" in e.message
    bad(j(op="exit", task="a"), key="task", prefix=(SPAWN, j(op="exit", task="a")))


def test_names_never_reused() -> None:
    bad(SPAWN, key="task")
    e = bad(SPAWN, key="task", prefix=(SPAWN, j(op="exit", task="a")))
    assert "never reused" in e.message
    bad(j(op="fork", task="a", child="a"), key="child")
    bad(j(op="fork", task="a", child="b"), key="child",
        prefix=(SPAWN, j(op="fork", task="a", child="b"), j(op="exit", task="b")))
    bad(j(op="spawn", task="b"), key="task", prefix=(SPAWN, j(op="fork", task="a", child="b")))


def test_forked_child_is_alive() -> None:
    ops = parse_trace_lines([SPAWN, j(op="fork", task="a", child="b"), j(op="exit", task="a"),
                             j(op="fork", task="b", child="c"), j(op="read", task="c", addr=A,
                                                                  pages=1)])
    assert len(ops) == 5


def test_whole_trace_rejected_on_a_late_error() -> None:
    lines = [SPAWN] + [json.dumps(VALID["read"])] * 50 + [j(op="read", task="zz",
                                                                 addr=A, pages=1)]
    assert err(lines).line == 52


# -- hostile input -------------------------------------------------------------

def test_deep_nesting() -> None:
    bad("[" * 30000 + "]" * 30000, key=None)
    bad('{"op": "snapshot", "label": ' + "[" * 30000 + "]" * 30000 + "}", key=None)


def test_huge_numbers() -> None:
    bad('{"op": "swapon", "pages": ' + "9" * 5000 + "}", key=None)
    bad('{"op": "swapon", "pages": ' + "9" * 4000 + "}", key="pages")
    bad('{"op": "swapon", "pages": 1e999}', key="pages")
    e = bad(j(op="read", task="a", addr="0x" + "f" * 20000, pages=1), key="addr")
    assert "not page-aligned" in e.message and len(e.message) < 200
    e = bad(j(op="read", task="a", addr="0x" + "1" + "0" * 4000, pages=1), key="addr")
    assert len(e.message) < 200


def test_megabyte_line() -> None:
    bad(j(op="snapshot", label="x" * (1 << 20)), key=None)
    bad(" " * (1 << 20) + SPAWN, key=None)


def test_long_comment_is_still_a_comment() -> None:
    assert parse_trace_lines(["# " + "x" * (1 << 20), SPAWN])[0].line == 2


def test_bytes_lines() -> None:
    assert parse_trace_lines([SPAWN.encode()])[0].task == "a"
    bad(b"\xff\xfe", key=None)


def test_non_text_line() -> None:
    bad(3, key=None)  # type: ignore[arg-type]


# -- files ---------------------------------------------------------------------

def test_load_trace(tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"# comment\r\n" + SPAWN.encode() + b"\r\n\r\n"
                     + json.dumps(VALID["read"]).encode() + b"\n")
    ops = load_trace(path)
    assert [(o.line, o.op) for o in ops] == [(2, "spawn"), (4, "read")]
    assert load_trace(str(path)) == ops


def test_load_trace_not_utf8(tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(SPAWN.encode() + b"\n\n" + b'{"op": "snapshot", "label": "\xe9"}\n')
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert info.value.line == 3 and "UTF-8" in info.value.message


def test_load_trace_unreadable(tmp_path: Any) -> None:
    for path in (tmp_path / "missing.jsonl", tmp_path):
        with pytest.raises(TraceError) as info:
            load_trace(path)
        assert info.value.line == 0 and "cannot read" in info.value.message


# -- fuzzing -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.sampled_from([0, 1, -1, 255, 256, MAX_PAGES, MAX_PAGES + 1, A, A + 1, WINDOW_END,
                       2**64, WINDOW_END - PAGE_SIZE])
    | st.text(max_size=20)
    | st.sampled_from(["0x", "0X1000", hex(A), hex(A + 1), hex(WINDOW_END), "0x" + "f" * 40,
                       "rw", "free", "volatile", "a", "b", "zz", "a" * 65, hex(A).upper()]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=8,
)
junk_lines = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    st.binary(max_size=60),
    json_values.map(json.dumps),
    st.sampled_from(["[" * 5000, "{" * 3000, '{"op": NaN}', '{"op": "spawn", "op": "spawn"}',
                     "9" * 5000, "\ud800", "#", "", " "]),
    st.builds(lambda name, key, value: json.dumps({**VALID[name], key: value}),
              st.sampled_from(sorted(VALID)), st.sampled_from(["op", "task", "child", "addr",
                                                                "pages", "new_pages",
                                                                "new_addr", "prot", "advice",
                                                                "value", "label", "x"]),
              json_values),
)

# Keys an error about a replaced key may name instead of it (the range it
# starts, or the task liveness it depends on).
RELATED = {"addr": {"addr", "pages", "new_pages"}, "new_addr": {"new_addr", "new_pages"},
           "pages": {"pages", "new_pages"}}


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(junk_lines, max_size=6), prefix=st.lists(
    st.sampled_from([SPAWN, "", "# c", json.dumps(VALID["read"])]), max_size=4))
def test_fuzz_only_trace_errors(lines: list[Any], prefix: list[str]) -> None:
    trace = [SPAWN, *prefix, *lines]
    try:
        parse_trace_lines(trace)
    except TraceError as e:
        assert 1 <= e.line <= len(trace)
        assert e.key is None or (isinstance(e.key, str) and len(e.key) < 80)
        str(e).encode("ascii", "backslashreplace")


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(VALID)), data=st.data(), value=json_values,
       blanks=st.integers(0, 3))
def test_fuzz_bad_value_names_line_and_key(name: str, data: Any, value: Any,
                                           blanks: int) -> None:
    keys = [k for k in VALID[name] if k != "op"]
    assume(keys)
    key = data.draw(st.sampled_from(keys))
    obj = {**VALID[name], key: value}
    trace = [SPAWN, *["# x"] * blanks, json.dumps(obj)]
    try:
        parse_trace_lines(trace)
    except TraceError as e:
        assert e.line == len(trace)
        assert e.key in RELATED.get(key, {key}), str(e)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.binary(max_size=80) | junk_lines.map(
    lambda s: s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")), max_size=5))
def test_fuzz_load_trace_files(data: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.jsonl")
        blob = b"\n".join([SPAWN.encode(), *data])
        with open(path, "wb") as f:
            f.write(blob)
        try:
            load_trace(path)
        except TraceError as e:
            assert 1 <= e.line <= blob.count(b"\n") + 1


def _built(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.skipif(not _built("rmaplab.replay_cli"), reason="replay not built yet")
@pytest.mark.skipif(not _built("rmaplab.kernel.cli"),
                    reason="rmaplab.cli needs rmaplab.kernel.cli, not built yet")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(junk_lines, min_size=1, max_size=4))
def test_fuzz_replay_cli_rejects(lines: list[Any]) -> None:
    from click.testing import CliRunner

    from rmaplab.cli import main

    raw = [s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass") for s in lines]
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "t.jsonl")
        with open(trace, "wb") as f:
            f.write(b"\n".join([SPAWN.encode(), *raw]))
        try:
            load_trace(trace)
            invalid = False
        except TraceError:
            invalid = True
        assume(invalid)  # only invalid traces must exit 2
        result = CliRunner().invoke(main, ["replay", trace, "--results",
                                           os.path.join(tmp, "r.jsonl"), "--snapshots",
                                           os.path.join(tmp, "s.jsonl")])
    assert result.exit_code == 2, result.output
    assert "line" in result.output
    assert "Traceback" not in result.output
