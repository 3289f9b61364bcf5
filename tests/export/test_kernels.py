"""graphwire's custom operators: ``torch.library.opcheck`` for each, and each kernel's output
against its torch fallback for the variant this process loaded (GRAPHWIRE_KERNELS)."""

import pytest
import torch
from torch import nn

from graphwire import _native
from graphwire._native import ops as _kernel
from graphwire.export import SparseConv2d

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _csr(m, n, dtype, seed=0, density=0.4):
    """A random sparse ``[m, n]`` matrix: dense, and its ``(rowptr, col, val)``."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=gen, dtype=dtype)
    a[torch.rand(m, n, generator=gen) >= density] = 0
    idx = a.nonzero()
    rowptr = torch.zeros(m + 1, dtype=torch.int64)
    rowptr[1:] = torch.bincount(idx[:, 0], minlength=m).cumsum(0)
    return a, (rowptr, idx[:, 1].contiguous(), a[idx[:, 0], idx[:, 1]].contiguous())


def _ell(m, n, width, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (m, width), generator=gen, dtype=torch.int32)
    return idx, torch.randn(m, width, generator=gen, dtype=dtype)


def _conv_args(dtype, batch, channels, out_channels, size, kernel, stride, padding, seed=0):
    """Arguments of ``sparse_conv2d`` for a random sparse convolution, and the dense one."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=padding).to(dtype)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape) < 0.5)
    layer = SparseConv2d(conv)
    x = torch.randn(batch, channels, *size, dtype=dtype)
    b = layer._buffers
    buffers = (b["rowptr"], b["col"], b["shift_row"], b["shift_col"], b["val"], b["bias"])
    return conv, x, buffers, out_channels, layer._geometry(x.shape[-2:], False)


def _shift_args(dtype, seed=0):
    """Arguments of ``shift_mix``: the phase images of a padded 3 x 3 convolution's input."""
    conv, x, buffers, rows, geometry = _conv_args(dtype, 2, 3, 5, (7, 9), 3, 1, 1, seed)
    top, left, sh, sw, rows_q, cols_q, out_h, out_w = geometry
    pads = (left, cols_q * sw - x.shape[3] - left, top, rows_q * sh - x.shape[2] - top)
    xp = nn.functional.pad(x, pads).reshape(2, 3, rows_q * cols_q)
    rowptr, col, shift_row, shift_col, val, _ = buffers
    return (xp, rowptr, col, shift_row, shift_col, val, rows, cols_q, out_h, out_w), conv, x


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


# ---- torch.library.opcheck: schema, fake implementation, autograd registration, AOT


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_csr_mix(dtype):
    _, (rowptr, col, val) = _csr(6, 9, dtype)
    x = torch.randn(2, 9, 70, dtype=dtype)
    _opcheck(torch.ops.graphwire.csr_mix.default, (x, rowptr, col, val, 6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_shift_mix(dtype):
    args, _, _ = _shift_args(dtype)
    _opcheck(torch.ops.graphwire.shift_mix.default, args)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epilogue", ["none", "bias-free", "residual-relu", "broadcast"])
def test_opcheck_sparse_conv2d(dtype, epilogue):
    conv, x, buffers, rows, geometry = _conv_args(dtype, 2, 3, 6, (9, 9), 3, 2, 1)
    extra = ()
    if epilogue == "bias-free":
        buffers = (*buffers[:5], None)
    elif epilogue == "residual-relu":
        extra = (torch.randn(conv(x).shape, dtype=dtype), True)
    elif epilogue == "broadcast":  # a residual the kernel cannot fuse: added by torch
        extra = (torch.randn(1, rows, 1, 1, dtype=dtype), True)
    _opcheck(torch.ops.graphwire.sparse_conv2d.default, (x, *buffers, rows, geometry, *extra))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [3, 70])  # the per-row walk and the blocks of 64 rows
@pytest.mark.parametrize("with_bias", [True, False])
def test_opcheck_csr_linear(dtype, batch, with_bias):
    _, (rowptr, col, val) = _csr(10, 12, dtype)
    bias = torch.randn(10, dtype=dtype) if with_bias else None
    x = torch.randn(batch, 12, dtype=dtype)
    _opcheck(torch.ops.graphwire.csr_linear.default, (x, rowptr, col, val, bias, 10))


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_ell_mix(dtype):
    idx, val = _ell(7, 11, 4, dtype)
    _opcheck(torch.ops.graphwire.ell_mix.default, (torch.randn(3, 11, dtype=dtype), idx, val))


# ---- each kernel against its torch fallback, for the loaded variant


def test_the_loaded_variant_is_the_one_asked_for():
    setting = _native._setting()
    if setting == "off":
        assert _native.load() is None and not _kernel.available()
    elif setting in _native.VARIANTS and _native.load() is not None:
        assert _native.loaded_variant() == setting
        assert _native.load().gw_built_level() == _native.VARIANTS.index(setting)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 5, 63), (3, 16, 9, 64), (2, 33, 40, 130)])
@pytest.mark.parametrize("threads", [1, 2])
def test_csr_mix_equals_its_fallback(dtype, shape, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check_csr_mix(dtype, shape)
    finally:
        torch.set_num_threads(before)


def _check_csr_mix(dtype, shape):
    g, n, m, p = shape
    a, (rowptr, col, val) = _csr(m, n, dtype, seed=sum(shape))
    x = torch.randn(g, n, p, dtype=dtype)
    y = _kernel.csr_mix(x, rowptr, col, val, m)
    want = _kernel._torch_csr_mix(x, rowptr, col, val, m)
    torch.testing.assert_close(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    torch.testing.assert_close(y, a @ x, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shift_mix_equals_its_fallback(dtype, seed):
    args, conv, x = _shift_args(dtype, seed)
    y = _kernel.shift_mix(*args)
    torch.testing.assert_close(y, _kernel._torch_shift_mix(*args), rtol=TOL[dtype], atol=TOL[dtype])
    want = nn.functional.conv2d(x, conv.weight, None, 1, 1).flatten(2)
    torch.testing.assert_close(y, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


CONVS = [  # batch, channels, out channels, size, kernel, stride, padding
    (1, 3, 8, (9, 9), 3, 1, 1),
    (3, 4, 6, (16, 12), 3, 2, 1),
    (8, 2, 5, (7, 20), 5, 1, 2),
    (2, 8, 16, (32, 32), 3, 1, 1),
    (4, 3, 4, (5, 5), 1, 2, 0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("epilogue", ["none", "residual", "residual-relu", "relu"])
def test_sparse_conv2d_equals_its_fallback(dtype, case, epilogue):
    conv, x, buffers, rows, geometry = _conv_args(dtype, *case)
    residual = torch.randn(conv(x).shape, dtype=dtype) if "residual" in epilogue else None
    relu = "relu" in epilogue
    args = (x, *buffers, rows, geometry, residual, relu)
    y = _kernel.sparse_conv2d(*args)
    want = _kernel._torch_sparse_conv2d(*args)
    torch.testing.assert_close(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    dense = conv(x) if residual is None else conv(x) + residual
    dense = dense.relu() if relu else dense
    torch.testing.assert_close(y, dense, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, _kernel.FEW_ROWS, _kernel.FEW_ROWS + 1, 64, 131])
@pytest.mark.parametrize("with_bias", [True, False])
def test_csr_linear_equals_its_fallback(dtype, rows, with_bias):
    a, (rowptr, col, val) = _csr(24, 40, dtype, seed=rows)
    bias = torch.randn(24, dtype=dtype) if with_bias else None
    x = torch.randn(rows, 40, dtype=dtype)
    y = _kernel.csr_linear(x, rowptr, col, val, bias, 24)
    want = _kernel._torch_csr_linear(x, rowptr, col, val, bias, 24)
    torch.testing.assert_close(y, want, rtol=TOL[dtype], atol=TOL[dtype])
    dense = x @ a.T if bias is None else x @ a.T + bias
    torch.testing.assert_close(y, dense, rtol=TOL[dtype], atol=TOL[dtype])
    assert y.is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 5, 3, 1), (3, 11, 7, 4), (17, 64, 40, 9), (2, 8, 6, 0)])
def test_ell_mix_equals_its_fallback(dtype, shape):
    batch, n, m, width = shape
    idx, val = _ell(m, n, width, dtype, seed=batch)
    x = torch.randn(batch, n, dtype=dtype)
    y = _kernel.ell_mix(x, idx, val)
    torch.testing.assert_close(
        y, _kernel._torch_ell_mix(x, idx, val), rtol=TOL[dtype], atol=TOL[dtype]
    )
