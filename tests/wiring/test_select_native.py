"""The native radix select against the torch path: identical masks, ties included."""

import pytest
import torch

from graphwire import SelectionError
from graphwire.wiring import _select
from graphwire.wiring.topk import select_topk

pytestmark = pytest.mark.skipif(not _select.available(), reason="native kernels off or not built")

N = _select.MIN_SIZE * 3 + 17  # not a multiple of the kernel's blocks


def draws():
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(N, generator=gen)
    yield "normal", normal
    yield "few levels", (normal * 2).round() / 2  # heavy ties everywhere
    signed_zeros = torch.zeros(N)
    signed_zeros[::3] = -0.0
    signed_zeros[::7] = 1.0
    yield "signed zeros", signed_zeros
    inf = normal.clone()
    inf[::1000] = float("inf")
    inf[1::1000] = float("-inf")
    yield "infinities", inf
    yield "all equal", torch.full((N,), 0.25)
    yield "tiny", normal * 1e-38  # subnormals


@pytest.mark.parametrize("magnitude", [True, False])
@pytest.mark.parametrize("k", [1, 2, 1000, N // 2, N - 1])
def test_native_mask_equals_the_torch_path(k, magnitude):
    for name, x in draws():
        native = _select.topk_mask(x, k, magnitude=magnitude)
        assert native is not None
        expected = select_topk(x.double(), [k], magnitude=magnitude)  # float64: torch path
        assert int(native.sum()) == k, name
        assert torch.equal(native, expected), name


def test_select_topk_uses_it_and_reports_nan():
    x = torch.randn(N)
    assert _select.applies(x)
    x[5] = float("nan")
    with pytest.raises(SelectionError, match="1 NaN"):
        select_topk(x, [10])
    with pytest.raises(SelectionError, match="1 NaN"):
        select_topk(x, [10], magnitude=True)


def test_small_non_contiguous_and_other_dtypes_take_the_torch_path():
    x = torch.randn(2 * N)
    assert _select.topk_mask(x[::2], 5, magnitude=True) is None
    assert _select.topk_mask(x[:100], 5, magnitude=True) is None
    assert _select.topk_mask(x.double(), 5, magnitude=True) is None
    torch.testing.assert_close(
        select_topk(x[::2], [5], magnitude=True), select_topk(x[::2].abs().double(), [5])
    )
