"""Layering: graphwire stands alone; models and benchmarks use only its public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, imported names)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # the file's package
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_attribute_uses(path: Path) -> list[str]:
    """``graphwire.x._y`` attribute chains (through import aliases) that reach a private name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: dict[str, str] = {}  # local name -> graphwire module path it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "graphwire":
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else "graphwire"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "graphwire":
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, inner = [node.attr], node.value
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id in bound:
            dotted = ".".join([bound[inner.id]] + chain[::-1])
            if any(_private(part) for part in dotted.split(".")):
                uses.append(f"line {node.lineno}: {dotted}")
    return sorted(set(uses))


def _files(top: str) -> list[Path]:
    return sorted(p for p in (ROOT / top).rglob("*.py") if "results" not in p.parts)


@pytest.mark.parametrize("path", _files("graphwire"), ids=lambda p: str(p.relative_to(ROOT)))
def test_graphwire_imports_neither_models_nor_benchmarks(path):
    bad = [
        f"line {line}: {module}"
        for line, module, _ in _imports(path)
        if module.split(".")[0] in ("models", "benchmarks")
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize(
    "path", _files("models") + _files("benchmarks"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_models_and_benchmarks_use_only_public_graphwire(path):
    bad = []
    for line, module, names in _imports(path):
        parts = module.split(".")
        if parts[0] != "graphwire":
            continue
        if any(_private(p) for p in parts) or any(_private(n) for n in names):
            bad.append(f"line {line}: import from {module} {names}")
    bad += _private_attribute_uses(path)
    assert not bad, f"{path.relative_to(ROOT)} uses graphwire's private names: {bad}"


def _private_third_party(path: Path) -> list[str]:
    """Private modules of torch and torchdiffeq imported, and ``Tensor._version`` read."""
    bad = []
    for line, module, names in _imports(path):
        parts = module.split(".")
        if parts[0] in ("torch", "torchdiffeq", "torch_geometric"):
            if any(_private(p) for p in parts) or any(_private(n) for n in names):
                bad.append(f"line {line}: import from {module} {names}")
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "_version":
            bad.append(f"line {node.lineno}: ._version")
        if isinstance(node, ast.Attribute) and node.attr in (
            "_NormBase",
            "_DropoutNd",
            "_AdaptiveAvgPoolNd",
        ):
            bad.append(f"line {node.lineno}: .{node.attr}")
    return bad


@pytest.mark.parametrize("path", _files("graphwire"), ids=lambda p: str(p.relative_to(ROOT)))
def test_graphwire_uses_no_private_api_of_its_dependencies(path):
    bad = _private_third_party(path)
    assert not bad, f"{path.relative_to(ROOT)} reaches into private APIs: {bad}"


# ------------------------------------------------------------------------- import graph
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Imports that run: at module level and inside functions, not under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    keep = {id(n) for n in ast.walk(tree) if id(n) not in skip}
    return [item for item, node in zip(_imports(path), _import_nodes(tree)) if id(node) in keep]


def _import_nodes(tree: ast.AST) -> list[ast.AST]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


MODULES = {_module_name(p): p for p in _files("graphwire")}


def _targets(module: str, names: list[str]) -> list[str]:
    """The graphwire modules an import statement loads (a submodule imported by name too)."""
    if module not in MODULES:
        return []
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return subs or [module]


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for _, module, names in _runtime_imports(path):
            edges[name] |= {t for t in _targets(module, names) if t != name}
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _room(module: str) -> str:
    """The subpackage a module belongs to (``graphwire.wiring``), or the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_cycle_between_subpackages():
    """Runtime imports (module level and inside functions) form no cycle between rooms.

    The top-level ``graphwire`` package, which gathers the public names, is left out.
    """
    rooms: dict[str, set[str]] = {}
    for src, dsts in _edges().items():
        if src == "graphwire":
            continue
        for dst in dsts:
            if dst != "graphwire" and _room(src) != _room(dst):
                rooms.setdefault(_room(src), set()).add(_room(dst))
    assert _cycle(rooms) is None, f"import cycle between subpackages: {_cycle(rooms)}"


def test_no_import_cycle_between_modules_of_a_subpackage():
    edges = _edges()
    inner = {
        src: {d for d in dsts if _room(d) == _room(src) and d != _room(src)}
        for src, dsts in edges.items()
        if src != _room(src)  # a package's __init__ gathers its modules: not a module
    }
    assert _cycle(inner) is None, f"import cycle inside a subpackage: {_cycle(inner)}"


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


SHARED_PRIVATE = ("graphwire._utils", "graphwire._native")  # the library's own helpers


@pytest.mark.parametrize("path", _files("graphwire"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_across_modules(path):
    """No ``_name`` from another module; another room's private modules stay its own.

    The top-level ``graphwire/__init__.py``, which gathers the public names from the
    modules that define them, is the one exception to the second rule.
    """
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    bad = []
    for line, module, names in _imports(path):
        if module.split(".")[0] != "graphwire" or module == me:
            continue
        for n in names:  # a private submodule imported from its own package is fine
            if _private(n) and not (module == package and f"{module}.{n}" in MODULES):
                if f"{module}.{n}" not in SHARED_PRIVATE:
                    bad.append(f"line {line}: {module}.{n}")
        if me == "graphwire":
            continue
        private_parts = [p for p in module.split(".") if _private(p)]
        if private_parts and not module.startswith(SHARED_PRIVATE):
            owner = module.split(f".{private_parts[0]}")[0]  # the package holding it
            if not (me == owner or me.startswith(owner + ".")):
                bad.append(f"line {line}: {module} (private to {owner})")
    assert not bad, f"{path.relative_to(ROOT)} imports private names: {bad}"
