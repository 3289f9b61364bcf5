"""The wheel holds the library only; models/ and benchmarks/ stay in the checkout."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_wheel_packages_are_graphwire_only():
    find = _config()["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(
        where=str(ROOT), include=find.get("include", ("*",)), exclude=find.get("exclude", ())
    )
    assert "graphwire" in packages and "graphwire.graph" in packages
    assert {p.split(".")[0] for p in packages} == {"graphwire"}


def _third_party_imports() -> dict[str, list[str]]:
    """Top-level modules imported anywhere in graphwire (functions too), not stdlib."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "graphwire").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "graphwire":
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_library_imports_are_declared_dependencies():
    """Every third-party module the library imports comes from a declared distribution.

    The declared distributions are the core dependencies; a module imported only by the
    optional data loaders (``mnist1d``, ``sklearn``, ``torchvision``) must be an extra.
    """
    config = _config()["project"]
    core = {_normal(re.split(r"[<>=!~ ;\[]", d)[0]) for d in config["dependencies"]}
    extras = {
        _normal(re.split(r"[<>=!~ ;\[]", d)[0])
        for deps in config["optional-dependencies"].values()
        for d in deps
    }
    providers = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "torch_geometric", "torchdiffeq", "networkx", "numpy"} <= set(imports)
    undeclared = {}
    for module, where in imports.items():
        dists = {_normal(d) for d in providers.get(module, [module])}
        if not dists & (core | extras):
            undeclared[module] = where[:3]
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
