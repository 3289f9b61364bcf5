"""The public API: the ``__all__`` of ``graphwire`` and of its subpackages.

Every entry resolves, no name is public twice, and the whole stays small (at most 60
names). Tuning constants and layout internals live in implementation modules, whose
``__all__`` only says what a module offers its room.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import graphwire

MAX_PUBLIC_NAMES = 60


def packages() -> list[str]:
    """``graphwire`` and every public subpackage of it (recursively)."""
    found = ["graphwire"]
    for info in pkgutil.walk_packages(graphwire.__path__, "graphwire."):
        if info.ispkg and not any(p.startswith("_") for p in info.name.split(".")):
            found.append(info.name)
    return found


PACKAGES = packages()
PUBLIC = [(pkg, name) for pkg in PACKAGES for name in importlib.import_module(pkg).__all__]


def test_the_public_packages_are_found():
    assert {"graphwire", "graphwire.graph", "graphwire.wiring", "graphwire.export"} <= set(PACKAGES)
    assert not any("._" in p for p in PACKAGES)


@pytest.mark.parametrize("package, name", PUBLIC, ids=[f"{p}.{n}" for p, n in PUBLIC])
def test_every_entry_resolves(package, name):
    module = importlib.import_module(package)
    assert hasattr(module, name), f"{package}.__all__ lists {name!r}, which it does not have"


def test_no_name_is_public_twice():
    seen: dict[str, str] = {}
    twice = []
    for package, name in PUBLIC:
        if name in seen:
            twice.append(f"{name} ({seen[name]} and {package})")
        seen[name] = package
    assert not twice, f"public twice: {twice}"
    objects: dict[int, str] = {}
    for package, name in PUBLIC:  # nor one object under two names
        obj = getattr(importlib.import_module(package), name)
        key = id(obj)
        assert key not in objects or isinstance(obj, (str, int, float, tuple)), (
            f"{package}.{name} is {objects[key]} again"
        )
        objects[key] = f"{package}.{name}"


def test_the_public_api_is_small():
    assert len(PUBLIC) <= MAX_PUBLIC_NAMES, (
        f"{len(PUBLIC)} public names (at most {MAX_PUBLIC_NAMES}): "
        + ", ".join(f"{p}.{n}" for p, n in PUBLIC)
    )


def test_compile_is_the_documented_alias_of_freeze():
    from graphwire.graph import layered_dag

    net = graphwire.WiredGraph(layered_dag([3, 5, 2]), density=0.5, seed=0)
    a, b = graphwire.freeze(net), graphwire.compile(net)
    assert type(a) is type(b) and a.kept_edges == b.kept_edges
    assert "freeze" in graphwire.compile.__doc__
    assert "compile" not in graphwire.__all__  # an alias, not a name of its own
