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
