# SPDX-License-Identifier: GPL-2.0-only
"""Sweep specifications: which experiment, schemes, parameter grid, repeats.

A SPEC is a small TOML file (docs/sweeps.md)::

    experiment = "aim7"                  # a registered experiment, or "pkg.module:ATTR"
    schemes = ["modern", "anon_vma_chain"]   # or "all"; default: the experiment's own
    repeats = 3                          # runs of each point (default 1)
    description = "anon_vma_chain's server, bigger N"   # optional, shown in the report

    [params]                             # a list of values, or one value
    procs = [10, 100, 1000]              # absent parameters take the experiment's defaults
    pages = 1000

load_spec() reads and validates one; every problem raises SpecError naming
the key. A Point is one (scheme, parameters, repeat) of the grid; its key,
(experiment, canonical parameters including the scheme, repeat), is what
the results store (store.py) writes once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .eras import ERAS, is_era
from .experiments import Experiment, experiments
from .rmap import SCHEMES, VARIANTS

TOP_KEYS = ("experiment", "schemes", "repeats", "params", "description", "era")
MAX_POINTS = 1_000_000
#: Arrays and inline tables nested deeper than this are refused before
#: tomllib sees them (it recurses once per level); a spec needs one.
MAX_NESTING = 8


class SpecError(ValueError):
    """A sweep spec that cannot be run; names the file and the key."""

    def __init__(self, key: str | None, message: str, source: str = "") -> None:
        self.key = key
        self.message = message
        self.source = source
        where = (f"{source}: " if source else "") + (f"key {key!r}: " if key else "")
        super().__init__(where + message)


def resolve_experiment(ref: str, *, allow_import: bool = False) -> Experiment:
    """A registered experiment by name, or, only with allow_import (the
    user's word that the module is trusted code), "package.module:ATTR"
    naming an Experiment object in an importable module. Nothing is called:
    an ATTR that is not an Experiment (a function, say) is refused."""
    reg = experiments()
    if ref in reg:
        return reg[ref]
    if ":" not in ref:
        raise LookupError(f"unknown experiment {ref!r}; choose one of {', '.join(sorted(reg))} "
                          "or give 'package.module:ATTR' (with --allow-import)")
    if not allow_import:
        raise LookupError(f"{ref!r} is not a registered experiment; importing it would run "
                          "the code of that module: pass --allow-import (allow_import=True) "
                          "if you trust it")
    mod_name, _, attr = ref.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - an ImportError, or the module's own error
        raise LookupError(f"cannot import {mod_name!r} for experiment {ref!r}: "
                          f"{type(e).__name__}: {e}") from None
    obj = getattr(mod, attr, None)
    if not isinstance(obj, Experiment):
        raise LookupError(f"{ref!r} is {type(obj).__name__}, not an rmaplab Experiment "
                          "object (nothing was called)")
    return obj


def canonical(obj: Any) -> str:
    """The canonical JSON text of parameters (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True, frozen=True)
class Point:
    """One run of the grid: its identity is (experiment, params_key, repeat)."""

    experiment: str
    scheme: str
    params: dict[str, Any]
    repeat: int

    @property
    def params_key(self) -> str:
        return canonical({"scheme": self.scheme, **self.params})

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.experiment, self.params_key, self.repeat)


@dataclass(slots=True, kw_only=True)
class SweepSpec:
    """A validated sweep: resolved experiment, schemes, full grid, repeats."""

    experiment_ref: str
    experiment: Experiment
    schemes: list[str]
    grid: dict[str, list[Any]]
    repeats: int = 1
    description: str = ""
    source: str = ""  # the TOML text (empty for a spec given as a dict)
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    allow_import: bool = False  # experiment_ref is a module:ATTR the user trusts
    era: str = "today"  # docs/eras.md; a point carries "era" only when it is not today

    def normalized(self) -> dict[str, Any]:
        out: dict[str, Any] = {"experiment": self.experiment_ref, "schemes": list(self.schemes),
               "params": {k: list(v) for k, v in self.grid.items()}, "repeats": self.repeats}
        if self.era != "today":
            out["era"] = self.era
        return out

    def point_keys(self) -> list[str]:
        """The keys of a point's params: the grid's, and "era" in era mode."""
        return [*self.grid, "era"] if self.era != "today" else list(self.grid)

    @property
    def hash(self) -> str:
        """SHA-256 of the normalized spec: the same sweep, the same hash,
        whatever the file's layout or comments (the description not included)."""
        return hashlib.sha256(canonical(self.normalized()).encode()).hexdigest()

    def points(self) -> list[Point]:
        """Every point, repeat by repeat (a stopped sweep has whole repeats first)."""
        keys = list(self.grid)
        combos = [dict(zip(keys, vals))
                  for vals in itertools.product(*(self.grid[k] for k in keys))]
        if self.era != "today":
            combos = [{**c, "era": self.era} for c in combos]
        return [Point(self.experiment.name, s, p, r)
                for r in range(self.repeats) for s in self.schemes for p in combos]


def _coerce(key: str, value: Any, kind: type, source: str) -> Any:
    """A TOML value as the type of the experiment's default."""
    if isinstance(value, bool) and kind is not bool:
        raise SpecError(key, f"{value!r} is a boolean, not {kind.__name__}", source)
    if kind is bool:
        if not isinstance(value, bool):
            raise SpecError(key, f"{value!r} is not a boolean", source)
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise SpecError(key, f"{value!r} is not an integer", source)
        return value
    if kind is float:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(key, f"{value!r} is not a finite number", source)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise SpecError(key, f"{value!r} is not a string", source)
        return value
    return value


def parse_spec(data: Mapping[str, Any], *, source: str = "", text: str = "",
               allow_import: bool = False) -> SweepSpec:
    """Validate a spec given as a mapping (what tomllib returns)."""
    if not isinstance(data, Mapping):
        raise SpecError(None, "a sweep spec is a table of keys", source)
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(key, f"unknown key; a spec has {', '.join(TOP_KEYS)}", source)
    if "experiment" not in data:
        raise SpecError("experiment", "missing: name the experiment to sweep", source)
    ref = data["experiment"]
    if not isinstance(ref, str) or not ref:
        raise SpecError("experiment", f"{ref!r} is not an experiment name", source)
    try:
        exp = resolve_experiment(ref, allow_import=allow_import)
    except LookupError as e:
        raise SpecError("experiment", str(e), source) from None

    schemes_v = data.get("schemes")
    if schemes_v is None:
        schemes = list(exp.schemes or SCHEMES)
    elif schemes_v == "all":
        schemes = list(SCHEMES)
    elif isinstance(schemes_v, list) and schemes_v and all(isinstance(s, str) for s in schemes_v):
        schemes = list(dict.fromkeys(schemes_v))
        for s in schemes:
            if s not in SCHEMES and s not in VARIANTS:  # a variant only by its name
                raise SpecError("schemes", f"unknown scheme {s!r}; choose from "
                                f"{', '.join(SCHEMES)} or \"all\"", source)
    else:
        raise SpecError("schemes", f"{schemes_v!r}: expected a non-empty list of scheme names "
                        "or \"all\"", source)

    repeats = data.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 10_000:
        raise SpecError("repeats", f"{repeats!r}: expected an integer from 1 to 10000", source)

    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise SpecError("description", f"{desc!r} is not a string", source)

    era = data.get("era", "today")
    if not is_era(era):
        raise SpecError("era", f"{era!r}: choose one of {', '.join(ERAS)}", source)
    if era != "today" and not exp.era_mode:
        raise SpecError("era", f"{exp.name} does not run in era mode; it runs on today's "
                        "rules only", source)

    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise SpecError("params", "expected a table: [params] name = [values]", source)
    grid = {k: list(v) for k, v in exp.params.items()}
    for key, raw in params.items():
        full = f"params.{key}"
        if key not in grid:
            raise SpecError(full, f"{exp.name} has no such parameter; it has "
                            f"{', '.join(exp.params)}", source)
        if key == "scheme":
            raise SpecError(full, "give schemes with the top-level 'schemes' key", source)
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise SpecError(full, "no value given", source)
        kind = type(exp.params[key][0])
        grid[key] = list(dict.fromkeys(_coerce(full, v, kind, source) for v in values))

    n = len(schemes) * repeats * math.prod(len(v) for v in grid.values())
    if n > MAX_POINTS:
        raise SpecError("params", f"the grid has {n:,} points; at most {MAX_POINTS:,}", source)
    keys = list(grid)
    for vals in itertools.product(*(grid[k] for k in keys)):
        why = exp.problem(dict(zip(keys, vals)))
        if why is not None:  # refused before anything runs, as `rmaplab experiment` does
            raise SpecError("params", why, source)
    return SweepSpec(experiment_ref=ref, experiment=exp, schemes=schemes, grid=grid,
                     repeats=repeats, description=desc, source=text, path=source,
                     allow_import=allow_import and ref not in experiments(), era=era)


def with_era(spec: SweepSpec, era: str) -> SweepSpec:
    """spec run in era instead (the command line's --era): a different sweep,
    its own points. SpecError if the experiment has no era mode."""
    if era != "today" and not spec.experiment.era_mode:
        raise SpecError("era", f"{spec.experiment.name} does not run in era mode; it runs "
                        "on today's rules only", spec.path)
    return dataclasses.replace(spec, era=era)


def _too_deep(text: str) -> tuple[int, str] | None:
    """(line, key) of the first value nested deeper than MAX_NESTING, or None.

    A scan of brackets outside strings and comments, enough to bound what
    tomllib would recurse into (a malformed file is tomllib's to report)."""
    depth, line, key, table, i, n = 0, 1, "", "", 0, len(text)
    line_start = 0
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            line_start = i + 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if text[i] == "\\" and quote[0] == '"':
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
            i += len(quote)
            continue
        elif c in "[{":
            if depth == 0:
                before = text[line_start:i]
                if not before.strip():  # a [table] header
                    end = text.find("\n", i)
                    table = text[i:end if end >= 0 else n].partition("#")[0].strip("[] \t")
                    key = table
                else:
                    key = before.partition("=")[0].strip()
                    key = f"{table}.{key}" if table else key
            depth += 1
            if depth > MAX_NESTING:
                return line, key
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def load_spec(path: str | os.PathLike[str], *, allow_import: bool = False) -> SweepSpec:
    """Read and validate a SPEC.toml; SpecError names the file and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(None, f"cannot read the spec: {e}", str(p)) from None
    deep = _too_deep(text)
    if deep is not None:
        line, key = deep
        raise SpecError(key or None, f"line {line}: arrays or tables nested more than "
                        f"{MAX_NESTING} deep (a spec needs a list of values)", str(p))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(None, f"not valid TOML: {e}", str(p)) from None
    except RecursionError:
        raise SpecError(None, "nested too deeply to read", str(p)) from None
    return parse_spec(data, source=str(p), text=text, allow_import=allow_import)
