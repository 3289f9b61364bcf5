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


def test_same_bytes_is_bitwise_and_checks_shape_dtype_and_layout():
    a = torch.randn(1000)
    assert _native.same_bytes(a, a.clone())
    b = a.clone()
    b[999] = b[999] + 1  # the last byte range differs
    assert not _native.same_bytes(a, b)
    assert not _native.same_bytes(a, a.double())
    assert not _native.same_bytes(a, a.view(10, 100))
    nan = torch.tensor([float("nan")])
    assert _native.same_bytes(nan, nan.clone())  # bitwise: a NaN equals itself
    assert not _native.same_bytes(torch.tensor([0.0]), torch.tensor([-0.0]))
    t = a.view(10, 100).t()  # not contiguous: compared by value
    assert _native.same_bytes(t, t.clone()) and not _native.same_bytes(t, t + 1)
    assert _native.same_bytes(torch.empty(0), torch.empty(0))


@pytest.mark.parametrize("dtype", [torch.bool, torch.float16, torch.float32, torch.float64])
def test_same_bytes_at_compares_the_gathered_positions_bitwise(dtype):
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(500, generator=gen) * 4).to(dtype)
    index = torch.randperm(500, generator=gen)[:60].sort().values
    b = a[index].clone()
    assert _native.same_bytes_at(a, index, b)
    a2 = a.clone()
    a2[torch.ones(500, dtype=torch.bool).index_fill_(0, index, False)] = 0  # elsewhere
    assert _native.same_bytes_at(a2, index, b)
    for pos in (0, 59):  # the first and the last compared element
        c = b.clone()
        c[pos] = ~c[pos] if dtype == torch.bool else c[pos] + 1
        assert not _native.same_bytes_at(a, index, c)
    assert not _native.same_bytes_at(a, index[:-1], b)  # lengths differ
    assert not _native.same_bytes_at(a.double() if dtype != torch.float64 else a.float(), index, b)
    assert _native.same_bytes_at(a, index[:0], b[:0])


def test_same_bytes_at_is_bitwise_for_nan_and_signed_zero():
    a = torch.tensor([float("nan"), 0.0, 1.0])
    index = torch.tensor([0, 1])
    assert _native.same_bytes_at(a, index, torch.tensor([float("nan"), 0.0]))
    assert not _native.same_bytes_at(a, index, torch.tensor([float("nan"), -0.0]))


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


def test_same_bytes_of_large_tensors_split_across_threads_sees_every_part():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(_native.SPLIT_MIN_BYTES // 4 * 3 + 5)  # over the split size
        assert _native.same_bytes(a, a.clone())
        for pos in (0, a.numel() // 2, a.numel() - 1):  # each thread's part
            b = a.clone()
            b[pos] = -b[pos] if b[pos] != 0 else 1.0
            assert not _native.same_bytes(a, b)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [1024, 1057, _native.SPLIT_MIN_BYTES * 3 + 13])
def test_packed_mask_sees_every_flipped_element(size, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(size)
        mask = torch.rand(size, generator=gen) < 0.3
        assert _native.PackedMask.usable(mask)
        packed = _native.PackedMask(mask)
        assert packed.same(mask) and packed.same(mask.clone())
        # every word of the vector loop, the scalar tail, and each thread's part
        for pos in (0, 31, 32, size // 2, size - 33, size - 1):
            flipped = mask.clone()
            flipped[pos] = ~flipped[pos]
            assert not packed.same(flipped), pos
        assert not packed.same(mask[:-1].clone())  # another shape
        assert not packed.same(mask.view(1, -1))
    finally:
        torch.set_num_threads(previous)


def test_packed_mask_compares_truth_values_of_nonzero_bytes():
    mask = torch.zeros(2048, dtype=torch.bool)
    mask[::7] = True
    packed = _native.PackedMask(mask)
    bytes_ = mask.view(torch.uint8).clone()
    bytes_[bytes_ == 1] = 5  # a bool tensor over bytes other than 0 / 1: still "true"
    assert packed.same(bytes_.view(torch.bool))
    assert not _native.PackedMask.usable(torch.zeros(100, dtype=torch.bool))  # small: bytes


def test_same_bytes_at_split_across_threads_sees_every_part():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(4)
        a = torch.randn(50_000, generator=gen)
        index = torch.randperm(50_000, generator=gen)[: _native.SAME_AT_SPLIT_MIN * 2 + 3]
        b = a[index].clone()
        assert _native.same_bytes_at(a, index, b)
        for pos in (0, b.numel() // 2, b.numel() - 1):  # each thread's part
            changed = b.clone()
            changed[pos] += 1.0
            assert not _native.same_bytes_at(a, index, changed), pos
    finally:
        torch.set_num_threads(threads)
