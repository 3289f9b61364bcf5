"""The wheel holds the library only; models/ and benchmarks/ stay in the checkout."""

from __future__ import annotations

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


def test_library_imports_are_declared_dependencies():
    deps = {
        d.split(">")[0].split("<")[0].split("=")[0].strip()
        for d in _config()["project"]["dependencies"]
    }
    # tqdm is imported by graphwire.training.loop: a core dependency, not an extra
    assert {"torch", "torch-geometric", "torchdiffeq", "networkx", "numpy", "tqdm"} <= deps
    torch_floor = next(d for d in _config()["project"]["dependencies"] if d.startswith("torch>"))
    assert torch_floor.startswith("torch>=2.4")  # torch.library.custom_op
