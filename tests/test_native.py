"""The one native builder: a working source loads once; a broken one warns and returns None."""

import ctypes
import shutil

import pytest
import torch

from graphwire import _native

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


def test_builds_caches_and_reports_a_failed_build(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_native, "_LOADED", {})
    declared = []

    def declare(lib):
        lib.gw_add.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.gw_add.restype = ctypes.c_int
        declared.append(lib)

    source = "int gw_add(int a, int b) { return a + b; }\n"
    lib = _native.load("adder", source, declare, "nothing")
    assert lib is not None and lib.gw_add(2, 3) == 5
    assert _native.load("adder", source, declare, "nothing") is lib  # loaded once
    assert len(declared) == 1
    assert len(list((tmp_path / "graphwire" / "kernels").glob("adder_*.so"))) == 1

    with pytest.warns(RuntimeWarning, match="(?s)'broken' could not be built.*use torch instead"):
        assert _native.load("broken", "this is not C", declare, "use torch instead") is None
    assert _native.load("broken", "this is not C", declare, "use torch instead") is None


@pytest.mark.parametrize("size", [100, 1 << 17])  # torch path, native path
def test_replace_counting_copies_and_counts_both_ways(size):
    gen = torch.Generator().manual_seed(size)
    dst = torch.rand(size, generator=gen) < 0.3
    src = torch.rand(size, generator=gen) < 0.3
    before = dst.clone()
    added, removed = _native.replace_counting(dst, src)
    assert torch.equal(dst, src)
    assert added == int((src & ~before).sum()) and removed == int((before & ~src).sum())
    assert added > 0 and removed > 0
    assert _native.replace_counting(dst, src) == (0, 0)
