"""The sparse-training kernels (``graphwire._native.grads``) against torch and their fallbacks.

Each kernel runs for the variant this process loaded (``GRAPHWIRE_KERNELS``; ``make
test`` runs every variant and ``off``), and is compared with a dense torch computation.
"""

import pytest
import torch

from graphwire._native import grads
from graphwire._native.ops import conv_geometry, conv_pads

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def _mask(shape, density, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


@pytest.mark.parametrize("shape", [(5, 7), (3, 64), (4, 130), (1, 1), (300, 97)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.6, 1.0])
def test_mask_pattern_is_the_csr_of_the_mask_by_row_and_by_column(shape, density):
    mask = _mask(shape, density)
    rowptr, col, flat, rowptr_t, col_t, flat_t = grads.mask_pattern(mask)
    rows = torch.repeat_interleave(torch.arange(shape[0]), rowptr.diff())
    assert torch.equal(torch.stack([rows, col]), mask.nonzero().t())
    assert torch.equal(flat, rows * shape[1] + col)
    cols = torch.repeat_interleave(torch.arange(shape[1]), rowptr_t.diff())
    assert torch.equal(torch.stack([cols, col_t]), mask.t().nonzero().t())
    assert torch.equal(flat_t, col_t * shape[1] + cols)
    assert grads.count_selected(mask) == int(mask.sum())


@pytest.mark.parametrize(
    "shape, groups, stride, dilation",
    [
        ((8, 6, 3, 3), 1, (1, 1), (1, 1)),
        ((9, 2, 3, 2), 3, (2, 1), (1, 2)),
        ((4, 4, 1, 5), 1, (3, 2), (2, 1)),
    ],
)
def test_conv_mask_pattern_matches_the_torch_layouts(shape, groups, stride, dilation):
    mask = _mask(shape, 0.3)
    native = grads.conv_mask_pattern(mask, groups, stride, dilation)
    reference = grads._torch_conv_mask_pattern(mask, groups, stride, dilation)
    for a, b in zip(native, reference):
        assert torch.equal(a, b)
    assert native[4].numel() == int(mask.sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length", [3, 37, 128])
def test_sddmm_is_the_dense_product_at_the_pattern(dtype, length):
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(30, length, generator=g, dtype=dtype),
        torch.randn(20, length, generator=g, dtype=dtype),
    )
    mask = _mask((30, 20), 0.3)
    rowptr, col, flat = grads.mask_pattern(mask)[:3]
    torch.testing.assert_close(
        grads.sddmm(a, b, rowptr, col), (a @ b.t()).reshape(-1)[flat], **TOL[dtype]
    )


def test_sampled_linear_gradients_do_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 300, generator=g), torch.randn(150, 300, generator=g)
    rowptr, col, flat = grads.mask_pattern(_mask((200, 150), 0.2))[:3]

    def both():  # the float64 SDDMM, and the float32 layer gradient (x [300, 150], dy [300, 200])
        return grads.sddmm(a.double(), b.double(), rowptr, col), grads.linear_weight_sampled(
            b.t(), a.t(), rowptr, col, flat
        )

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = both()
    finally:
        torch.set_num_threads(threads)
    for got, expected in zip(both(), one):
        assert torch.equal(got, expected)


CONVS = [  # (in, out, kernel, stride, padding, dilation, groups, size)
    (4, 6, 3, 1, 1, 1, 1, (9, 9)),
    (4, 6, 3, 2, 1, 1, 2, (9, 8)),
    (3, 5, (3, 2), (2, 3), 0, (2, 1), 1, (11, 10)),
    (6, 6, 5, 1, 2, 1, 3, (7, 7)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv2d_weight_sampled_is_the_dense_weight_gradient_at_the_pattern(dtype, case):
    cin, cout, k, s, p, d, groups, size = CONVS[case]
    conv = torch.nn.Conv2d(cin, cout, k, s, p, d, groups).to(dtype)
    mask = _mask(conv.weight.shape, 0.4)
    rowptr, col, srow, scol, flat = grads.conv_mask_pattern(
        mask, groups, conv.stride, conv.dilation
    )[:5]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, cin, *size, generator=g, dtype=dtype)
    dy = torch.randn(conv(x).shape, generator=g, dtype=dtype)
    kh, kw = conv.kernel_size
    shift = (
        (kh - 1) * conv.dilation[0] // conv.stride[0],
        (kw - 1) * conv.dilation[1] // conv.stride[1],
    )
    geometry = conv_geometry(
        size, conv_pads(conv), conv.kernel_size, conv.dilation, conv.stride, shift
    )
    dense = torch.nn.grad.conv2d_weight(
        x, conv.weight.shape, dy, conv.stride, conv.padding, conv.dilation, groups
    )
    sampled = grads.conv2d_weight_sampled(x, dy, rowptr, col, srow, scol, geometry)
    torch.testing.assert_close(sampled, dense.reshape(-1)[flat], **TOL[dtype])


def test_conv2d_weight_sampled_refuses_a_geometry_that_reads_past_the_input():
    mask = torch.ones(2, 2, 3, 3, dtype=torch.bool)
    rowptr, col, srow, scol = grads.conv_mask_pattern(mask, 1, (1, 1), (1, 1))[:4]
    bad = [1, 1, 1, 1, 6, 8, 6, 6]  # rows_q too small for the largest shift
    x, dy = torch.randn(1, 2, 6, 6), torch.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="reads past"):
        grads.conv2d_weight_sampled(x, dy, rowptr, col, srow, scol, bad)


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_sddmm(dtype):
    rowptr, col = grads.mask_pattern(_mask((6, 5), 0.5))[:2]
    args = (torch.randn(6, 9, dtype=dtype), torch.randn(5, 9, dtype=dtype), rowptr, col)
    _opcheck(torch.ops.graphwire.sddmm.default, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_conv2d_weight_sampled(dtype):
    rowptr, col, srow, scol = grads.conv_mask_pattern(_mask((4, 3, 3, 3), 0.4), 1, (2, 2), (1, 1))[
        :4
    ]
    geometry = conv_geometry((7, 7), (1, 1, 1, 1), (3, 3), (1, 1), (2, 2), (1, 1))
    x, dy = torch.randn(2, 3, 7, 7, dtype=dtype), torch.randn(2, 4, 4, 4, dtype=dtype)
    _opcheck(
        torch.ops.graphwire.conv2d_weight_sampled.default,
        (x, dy, rowptr, col, srow, scol, geometry),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [5, 64, 150])  # one partial block, one block, several
def test_linear_weight_sampled_is_the_masked_dense_gradient(dtype, rows):
    g = torch.Generator().manual_seed(0)
    x, dy = (
        torch.randn(rows, 37, generator=g, dtype=dtype),
        torch.randn(rows, 23, generator=g, dtype=dtype),
    )
    mask = _mask((23, 37), 0.3)
    rowptr, col, flat = grads.mask_pattern(mask)[:3]
    got = grads.linear_weight_sampled(x, dy, rowptr, col, flat)
    torch.testing.assert_close(got, (dy.t() @ x) * mask, **TOL[dtype])
    assert bool((got[~mask] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_linear_weight_sampled(dtype):
    rowptr, col, flat = grads.mask_pattern(_mask((6, 5), 0.5))[:3]
    args = (torch.randn(70, 5, dtype=dtype), torch.randn(70, 6, dtype=dtype), rowptr, col, flat)
    _opcheck(torch.ops.graphwire.linear_weight_sampled.default, args)
