# SPDX-License-Identifier: GPL-2.0-only
"""Imports run one way, from the CLI down to mm_types (docs/architecture.md).

Every module of rmaplab/ is parsed with ast and every import counted,
wherever it is: at module level, under ``if TYPE_CHECKING:`` (an annotation
names a module as surely as a call does) and inside functions. Importing a
submodule from outside its package also runs the package's __init__, so
that counts as an import of the package too. The graph must have no cycle,
and no function may import anything but the heavy optional dependencies of
the output layer, or (in cli.py) the verb modules it registers.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "rmaplab"

#: Third-party packages a function may import when it needs them (slow to
#: import, and only some commands use them).
HEAVY = {"matplotlib", "pyarrow", "dask", "distributed", "pandas"}
#: rmaplab modules allowed to import rmaplab modules inside a function.
LAZY_INTERNAL = {"rmaplab.cli"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (path, is a package __init__)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path, is_pkg)
    return out


def _targets(name: str, is_pkg: bool, node: ast.Import | ast.ImportFrom,
             mods: dict[str, tuple[Path, bool]]) -> set[str]:
    """The rmaplab modules node imports (with the packages it enters)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        dotted = [a.name for a in node.names]
    else:
        if node.level:
            base = name.split(".")
            base = base[:len(base) - node.level + (1 if is_pkg else 0)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        dotted = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
    parts = name.split(".")
    own = {".".join(parts[:i]) for i in range(1, len(parts))} | ({name} if is_pkg else set())
    for d in dotted:
        if d not in mods:
            continue
        found.add(d)
        # entering a package from outside runs its __init__
        p = d.split(".")
        for i in range(1, len(p)):
            pkg = ".".join(p[:i])
            if pkg in mods and pkg not in own:
                found.add(pkg)
    found.discard(name)
    return found


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Edges of every import, and the imports made inside functions."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    local: list[tuple[str, int, str]] = []
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(name, is_pkg, node, mods)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in fn.body:
                    for sub in ast.walk(node):
                        if isinstance(sub, (ast.Import, ast.ImportFrom)):
                            local.append((name, sub.lineno, ast.unparse(sub)))
                            _check_local(name, sub, mods)
        graph[name] = edges
    return graph, sorted(set(local))


def _check_local(name: str, node: ast.Import | ast.ImportFrom,
                 mods: dict[str, tuple[Path, bool]]) -> None:
    """Assert an import inside a function is one the allow-list permits."""
    if isinstance(node, ast.ImportFrom) and node.level:
        allowed = name in LAZY_INTERNAL
    else:
        tops = ([a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import)
                else [(node.module or "").split(".")[0]])
        allowed = all(t in HEAVY for t in tops) or (name in LAZY_INTERNAL and tops == ["rmaplab"])
    assert allowed, (f"{name} line {node.lineno}: `{ast.unparse(node)}` inside a function; "
                     "import at the top of the module (see docs/architecture.md for the "
                     "layer order), or move the shared piece down a layer")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_no_import_cycle_counting_annotation_and_local_imports() -> None:
    graph, _ = import_graph()
    assert "rmaplab.machine" in graph and "rmaplab.mm_state" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_function_local_imports_only_the_allowed_ones() -> None:
    _, local = import_graph()  # _check_local asserts on each one as it is found
    internal = {name for name, _, text in local if text.startswith("from .")}
    assert internal <= LAZY_INTERNAL, internal


def test_the_mm_core_never_imports_the_syscall_layer() -> None:
    graph, _ = import_graph()
    above = {"rmaplab.machine", "rmaplab.replay", "rmaplab.cli"}
    for name, edges in graph.items():
        if name in above or not _is_mm_core(name):
            continue
        assert not edges & above, f"{name} imports {sorted(edges & above)}"


def _is_mm_core(name: str) -> bool:
    return name.startswith("rmaplab.rmap") or name.split(".")[-1] in {
        "mm_state", "mm_types", "page_alloc", "slab", "swap", "swap_state", "swapfile",
        "pgtable", "memory", "mmap", "mremap", "mprotect", "mlock", "madvise", "fork",
        "vmscan", "volatile", "oom_kill", "debug_vm", "snapshot", "uapi", "errors", "consts"}


def test_the_checker_finds_a_cycle_and_a_local_import() -> None:
    # the checks themselves work: a made-up graph with a cycle, and a local import
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from .vmscan import lru_add\n")
    node = tree.body[0].body[0]  # type: ignore[attr-defined]
    try:
        _check_local("rmaplab.machine", node, modules())
    except AssertionError as e:
        assert "inside a function" in str(e)
    else:
        raise AssertionError("a function-local import in machine.py was allowed")
    heavy = ast.parse("def f():\n    import matplotlib.pyplot as plt\n").body[0].body[0]  # type: ignore[attr-defined]
    _check_local("rmaplab.report", heavy, modules())


def test_docs_architecture_places_every_module() -> None:
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    missing = []
    for name in modules():
        parts = name.split(".")[1:]
        if not parts or parts[0] in ("experiments", "contention"):
            continue  # the packages are placed whole
        path = "/".join(parts) + ".py" if name not in ("rmaplab.rmap", "rmaplab.kernel") else ""
        if path and f"`{path}`" not in doc and not (path.endswith("_cli.py") and "*_cli.py" in doc):
            missing.append(path)
    assert not missing, f"docs/architecture.md does not place {missing}"
