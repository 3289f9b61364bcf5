"""Frozen sparse layers against the dense torch layers they replace."""

import copy
import io
import itertools
import zlib

import pytest
import torch
from torch import nn

from graphwire._native import ops as _kernel
from graphwire._native.ops import _MAX_DENSITY
from graphwire.export import SparseConv2d, SparseLinear, kernel_info
from graphwire.export._layers import SparseConv1d, sparse_layer

DTYPES = (torch.float32, torch.float64)
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pruned(layer, density, seed):
    """``layer`` with a random ``1 - density`` of its weights set to exactly zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(layer.weight.shape, generator=gen) < density)
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
    return layer.eval()


def close(a, b, dtype):
    assert a.shape == b.shape
    scale = max(1.0, float(b.detach().abs().max()))
    torch.testing.assert_close(a, b, rtol=0, atol=TOL[dtype] * scale)


CONV2D = list(
    itertools.product(
        [1, 3, (3, 2), 5],  # kernel
        [1, 2, (2, 3)],  # stride
        [0, 1, (2, 1), "same"],  # padding
        [1, 2],  # dilation
        [1, 2],  # groups
        ["zeros", "reflect", "replicate", "circular"],
    )
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,groups,mode",
    [c for c in CONV2D if not (c[2] == "same" and c[1] != 1)][::5],
)
def test_sparse_conv2d_equals_dense(kernel, stride, padding, dilation, groups, mode, dtype):
    seed = zlib.crc32(repr((kernel, stride, padding, dilation, groups, mode)).encode())
    conv = nn.Conv2d(
        4, 6, kernel, stride, padding, dilation, groups, padding_mode=mode, dtype=dtype
    )
    conv = pruned(conv, 0.3, seed)
    gen = torch.Generator().manual_seed(seed)
    checked = 0
    for size in ((11, 9), (8, 13), (17, 16)):
        x = torch.randn(3, 4, *size, generator=gen, dtype=dtype)
        try:
            expected = conv(x)
        except RuntimeError:  # the kernel or the padding does not fit this size
            continue
        close(SparseConv2d(conv)(x), expected, dtype)
        close(SparseConv2d(conv)(x[0]), conv(x[0]), dtype)  # unbatched
        checked += 1
    assert checked


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,groups",
    [  # torch rejects padding="same" with a stride
        c
        for c in itertools.product([1, 3, 4], [1, 2, 3], [0, 2, "same"], [1, 3], [1, 2])
        if not (c[2] == "same" and c[1] != 1)
    ],
)
def test_sparse_conv1d_equals_dense(kernel, stride, padding, dilation, groups, dtype):
    conv = pruned(
        nn.Conv1d(4, 6, kernel, stride, padding, dilation, groups, dtype=dtype), 0.4, kernel
    )
    x = torch.randn(2, 4, 23, dtype=dtype)
    close(SparseConv1d(conv)(x), conv(x), dtype)
    close(SparseConv1d(conv)(x[0]), conv(x[0]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 7), (130,), ()])
def test_sparse_linear_equals_dense(lead, bias, dtype):
    linear = pruned(nn.Linear(19, 11, bias=bias, dtype=dtype), 0.2, len(lead))
    x = torch.randn(*lead, 19, dtype=dtype)
    close(SparseLinear(linear)(x), linear(x), dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 7, 8, 9, 63, 64, 65, 200])  # blocks of 64, groups of 8
@pytest.mark.parametrize("features", [(3, 5), (8, 16), (17, 40), (130, 9)])
def test_csr_linear_kernel_equals_the_dense_product(features, rows, bias, threads):
    torch.set_num_threads(threads)  # (the fixture restores it) 2: outputs split too
    n, m = features
    linear = pruned(nn.Linear(n, m, bias=bias), 0.3, rows + n)
    sparse = SparseLinear(linear)
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(rows))
    y = _kernel.csr_linear(x, sparse.rowptr, sparse.col, sparse.val, sparse.bias, m)
    close(y, linear(x), torch.float32)
    if bias:  # the bias is added to every row, also the last, partial block's
        assert not torch.equal(
            y, _kernel.csr_linear(x, sparse.rowptr, sparse.col, sparse.val, None, m)
        )


def test_threads_split_small_images_by_rows():
    torch.set_num_threads(2)  # (the fixture restores it) 7 x 7: fewer tiles than threads
    conv = pruned(nn.Conv2d(16, 32, 3, padding=1), 0.2, 9)
    x = torch.randn(1, 16, 7, 7)
    close(SparseConv2d(conv)(x), conv(x), torch.float32)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv2d(6, 8, 3, padding=1),
        lambda: nn.Conv2d(6, 8, 3, stride=2, padding=1),
        lambda: nn.Conv2d(6, 8, (3, 5), padding=(2, 1), dilation=(2, 1)),
        lambda: nn.Conv2d(6, 8, 1, stride=2),
    ],
    ids=["3x3", "stride2", "dilated", "1x1-stride2"],
)
def test_bands_of_rows_per_thread_equal_dense(conv, batch, threads):
    """Images cut into one band of rows per thread (batch 1 and 3 with several threads)
    and batches walked image by image give the dense convolution, epilogue included."""
    torch.set_num_threads(threads)  # (the fixture restores it)
    dense = pruned(conv(), 0.3, batch * 10 + threads)
    sparse = SparseConv2d(dense)
    sparse.fused_relu = True
    gen = torch.Generator().manual_seed(batch)
    for size in ((23, 19), (40, 9)):  # bands of several tiles; rows of less than a tile
        x = torch.randn(batch, 6, *size, generator=gen)
        with torch.inference_mode():
            y = dense(x)
            r = torch.randn(y.shape, generator=gen)
            close(SparseConv2d(dense)(x), y, torch.float32)
            close(sparse(x, r), torch.relu(y + r), torch.float32)


def test_all_zero_rows_and_empty_weights():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[2, 1, 0, 2] = 1.5
    x = torch.randn(2, 3, 6, 6)
    close(SparseConv2d(conv)(x), conv(x), torch.float32)
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.zero_()
    v = torch.randn(2, 4)
    close(SparseLinear(linear)(v), linear(v), torch.float32)


def test_torch_fallbacks_match_the_compiled_kernels(monkeypatch):
    conv = pruned(nn.Conv2d(4, 8, 3, stride=2, padding=1, dilation=2), 0.3, 1)
    linear = pruned(nn.Linear(16, 8), 0.3, 2)
    x, v = torch.randn(2, 4, 13, 10), torch.randn(70, 16)
    sparse_conv, sparse_linear = SparseConv2d(conv), SparseLinear(linear)
    with torch.inference_mode():
        fast = sparse_conv(x), sparse_linear(v)
        monkeypatch.setattr(_kernel, "load", lambda: None)  # as if no C compiler
        slow = sparse_conv(x), sparse_linear(v)
    close(slow[0], conv(x), torch.float32)
    close(slow[1], linear(v), torch.float32)
    close(fast[0], slow[0], torch.float32)
    close(fast[1], slow[1], torch.float32)


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "torch-fallback"])
def test_shift_mix_refuses_reads_past_its_input(native, monkeypatch):
    if not native:
        monkeypatch.setattr(_kernel, "load", lambda: None)  # as if no C compiler
    x = torch.randn(1, 2, 64)
    one = torch.ones(1)
    index = torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    with pytest.raises(ValueError, match="reads past x"):
        _kernel.shift_mix(x, *index, one, 1, 8, 8, 8)
    inside = torch.tensor([0]), torch.tensor([0])  # no shift: 64 positions of 64, fine
    assert _kernel.shift_mix(x, *index[:2], *inside, one, 1, 8, 8, 8).shape == (1, 1, 64)


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "torch-fallback"])
def test_sparse_conv2d_refuses_reads_past_its_padded_input(native, monkeypatch):
    if not native:
        monkeypatch.setattr(_kernel, "load", lambda: None)  # as if no C compiler
    x = torch.randn(1, 2, 8, 8)
    one = torch.ones(1)
    index = torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    # 8 x 8 phase grid, 8 x 8 outputs: 64 positions, and the shift of 1 reads a 65th
    with pytest.raises(ValueError, match="reads past"):
        _kernel.sparse_conv2d(x, *index, one, None, 1, [0, 0, 1, 1, 8, 8, 8, 8])
    y = _kernel.sparse_conv2d(x, *index, one, None, 1, [0, 0, 1, 1, 9, 8, 8, 7])  # a zero row
    close(y[0, 0], x[0, 0, :, 1:], torch.float32)  # column shift 1, cropped to 7 columns


EPILOGUE_CONVS = {
    "3x3": lambda dtype: nn.Conv2d(4, 6, 3, padding=1, dtype=dtype),
    "stride2": lambda dtype: nn.Conv2d(4, 6, 3, stride=2, padding=1, dtype=dtype),
    "dilated-groups": lambda dtype: nn.Conv2d(
        4, 6, 3, padding=2, dilation=2, groups=2, dtype=dtype
    ),
    "reflect": lambda dtype: nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect", dtype=dtype),
    "pointwise": lambda dtype: nn.Conv2d(4, 6, 1, dtype=dtype),
    "pointwise-stride2": lambda dtype: nn.Conv2d(4, 6, 1, stride=2, bias=False, dtype=dtype),
}


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "torch-fallback"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", [None, "same", "broadcast"])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("conv", sorted(EPILOGUE_CONVS))
def test_fused_epilogue_equals_the_separate_operations(
    conv, relu, residual, dtype, native, monkeypatch
):
    if not native:
        monkeypatch.setattr(_kernel, "load", lambda: None)  # as if no C compiler
    dense = pruned(EPILOGUE_CONVS[conv](dtype), 0.3, zlib.crc32(conv.encode()))
    plain, fused = SparseConv2d(dense), SparseConv2d(dense)
    fused.fused_relu = relu
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 11, 10, generator=gen, dtype=dtype)
    with torch.inference_mode():
        y = plain(x)
        r = {
            None: None,
            "same": torch.randn(y.shape, generator=gen, dtype=dtype),
            "broadcast": torch.randn(1, 6, 1, 1, generator=gen, dtype=dtype),
        }[residual]
        expected = y if r is None else y + r
        expected = torch.relu(expected) if relu else expected
        got = fused(x, r)
        assert torch.equal(got, expected)  # the same additions in the same order
        assert (got >= 0).all() if relu else (got < 0).any()
        unbatched = fused(x[0], None if r is None else r[0])
        assert torch.equal(unbatched, expected[0])
    close(y, dense(x), dtype)


@pytest.mark.parametrize("relu", [True, False])
def test_fused_epilogue_of_conv1d(relu):
    dense = pruned(nn.Conv1d(4, 6, 3, padding=1), 0.4, 21)
    fused = SparseConv1d(dense)
    fused.fused_relu = relu
    x, r = torch.randn(2, 4, 17), torch.randn(2, 6, 17)
    with torch.inference_mode():
        expected = dense(x) + r
        close(fused(x, r), torch.relu(expected) if relu else expected, torch.float32)
        close(fused(x[0], r[0]), torch.relu(expected[0]) if relu else expected[0], torch.float32)


def test_fused_epilogue_residual_that_is_not_contiguous_or_of_another_dtype():
    dense = pruned(nn.Conv2d(4, 6, 3, padding=1), 0.3, 22)
    fused = SparseConv2d(dense)
    fused.fused_relu = True
    x = torch.randn(2, 4, 7, 7)
    with torch.inference_mode():
        y = SparseConv2d(dense)(x)
        strided = torch.randn(2, 6, 7, 14)[..., ::2]  # not contiguous: torch adds it
        assert torch.equal(fused(x, strided), torch.relu(y + strided))
        wide = torch.randn(2, 6, 7, 7, dtype=torch.float64)  # promotes, as + does
        out = fused(x, wide)
        assert out.dtype == torch.float64 and torch.equal(out, torch.relu(y + wide))


def test_direct_kernel_calls_are_prepared_per_shape_and_follow_moved_buffers():
    conv = pruned(nn.Conv2d(4, 6, 3, padding=1), 0.3, 11)
    sparse = SparseConv2d(conv)
    x, x2 = torch.randn(2, 4, 9, 9), torch.randn(3, 4, 5, 7)
    with torch.inference_mode():
        close(sparse(x), conv(x), torch.float32)
        close(sparse(x2), conv(x2), torch.float32)
        close(sparse(x), conv(x), torch.float32)
    assert len(sparse._direct._plans) == (2 if kernel_info()["available"] else 0)
    sparse.double()  # new buffers: float64 runs the operator, not the float32 kernel
    with torch.inference_mode():
        close(sparse(x.double()), conv.double()(x.double()), torch.float64)
    sparse.float()
    conv.float()
    with torch.inference_mode():
        close(sparse(x), conv(x), torch.float32)  # the plans follow the buffers' addresses
    needs_grad = x.clone().requires_grad_()
    buffers = tuple(sparse._buffers[k] for k in ("rowptr", "col", "shift_row", "shift_col"))
    buffers += (sparse.val, sparse.bias)
    geometry = sparse._geometry(x.shape[-2:], False)
    assert sparse._direct(needs_grad, buffers, 6, geometry) is None  # autograd: the operator


def test_direct_kernel_calls_ignore_the_default_dtype():
    conv = pruned(nn.Conv2d(4, 6, 3, padding=1), 0.3, 12)
    sparse = SparseConv2d(conv)
    x = torch.randn(1, 4, 6, 6)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.inference_mode():
            y = sparse(x)
    finally:
        torch.set_default_dtype(default)
    assert y.dtype == torch.float32
    close(y, conv(x), torch.float32)


def test_state_dict_round_trip_and_inference_mode():
    conv = pruned(nn.Conv2d(4, 8, 3, padding=1), 0.2, 3)
    other = pruned(nn.Conv2d(4, 8, 3, padding=1), 0.2, 3)  # same zeros, other values
    with torch.no_grad():
        other.weight.mul_(2.0)
    a, b = SparseConv2d(conv), SparseConv2d(other)
    x = torch.randn(2, 4, 7, 7)
    assert not torch.allclose(a(x), b(x))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer))
    with torch.inference_mode():
        close(b(x), conv(x), torch.float32)
    assert not any(True for _ in a.parameters())  # a frozen module: buffers only


def test_layers_pickle_and_deep_copy_after_a_call():
    conv = pruned(nn.Conv2d(4, 8, 3, padding=1), 0.3, 13)
    linear = pruned(nn.Linear(16, 8), 0.3, 14)
    x, v = torch.randn(2, 4, 7, 7), torch.randn(5, 16)
    for layer, inp in ((SparseConv2d(conv), x), (SparseLinear(linear), v)):
        with torch.inference_mode():
            expected = layer(inp)  # prepares the direct kernel calls
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        for copied in (copy.deepcopy(layer), torch.load(buffer, weights_only=False)):
            with torch.inference_mode():
                assert torch.equal(copied(inp), expected)
            if isinstance(copied, SparseConv2d):  # its own plans, for its own buffers
                assert copied._direct is not layer._direct


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Conv2d(4, 8, 3, stride=2, padding=1), (2, 4, 9, 9)),
        (nn.Conv2d(4, 8, 1), (2, 4, 5, 5)),
        (nn.Conv1d(4, 8, 3, padding=1), (2, 4, 9)),
        (nn.Linear(6, 5), (3, 4, 6)),
    ],
    ids=["conv3x3", "conv1x1", "conv1d", "linear"],
)
def test_torch_export(layer, shape):
    dense = pruned(layer, 0.3, 4)
    sparse = sparse_layer(dense, "sparse")
    assert sparse is not dense
    x = torch.randn(*shape)
    program = torch.export.export(sparse, (x,))
    close(program.module()(x), dense(x), torch.float32)
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any(op.startswith("graphwire.") for op in ops), ops  # the kernel is traced


def test_cost_model_picks_each_layer_s_kernel():
    linear = nn.Linear(40, 40)
    assert sparse_layer(linear) is linear  # no zeros: dense
    assert isinstance(sparse_layer(linear, "sparse"), SparseLinear)
    pruned(linear, _MAX_DENSITY["linear"] / 2, 5)
    assert (sparse_layer(linear) is not linear) == kernel_info()["available"]
    conv3d = nn.Conv3d(2, 2, 3)
    assert sparse_layer(conv3d, "sparse") is conv3d  # no sparse path
    half = pruned(nn.Conv2d(4, 4, 3).double(), 0.01, 6).half()
    assert sparse_layer(half) is half  # no half-precision kernels


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sparse_layers_match_dense():
    conv = pruned(nn.Conv2d(4, 8, 3, padding=1), 0.2, 7).cuda()
    linear = pruned(nn.Linear(16, 8), 0.2, 8).cuda()
    x, v = torch.randn(2, 4, 9, 9, device="cuda"), torch.randn(5, 16, device="cuda")
    assert sparse_layer(conv) is conv  # dense kernels on a GPU
    with torch.inference_mode():
        close(sparse_layer(conv, "sparse")(x), conv(x), torch.float32)
        close(sparse_layer(linear, "sparse")(v), linear(v), torch.float32)


# ------------------------------------------------------------------ ELL (constant fan-in)
def constant_fan_in(linear, fan_in, seed):
    """``linear`` with exactly ``fan_in`` nonzero weights in every row (output)."""
    gen = torch.Generator().manual_seed(seed)
    out, inp = linear.weight.shape
    keep = torch.zeros(out, inp, dtype=torch.bool)
    for row in range(out):
        keep[row, torch.randperm(inp, generator=gen)[:fan_in]] = True
    with torch.no_grad():
        linear.weight.mul_(keep)
    return linear.eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 70])  # ELL up to ELL_MAX_ROWS, then CSR
def test_constant_fan_in_linear_keeps_ell_and_equals_dense(rows, dtype):
    linear = constant_fan_in(nn.Linear(37, 21, dtype=dtype), 5, rows)
    sparse = SparseLinear(linear)
    assert sparse.ell_idx.shape == sparse.ell_val.shape == (21, 5)
    assert sparse.ell_idx.dtype == torch.int32
    x = torch.randn(rows, 37, dtype=dtype)
    with torch.inference_mode():
        close(sparse(x), linear(x), dtype)


def test_ell_is_kept_only_for_rows_of_nearly_one_length():
    uneven = nn.Linear(40, 6)
    with torch.no_grad():
        uneven.weight.zero_()
        uneven.weight[0, :30] = 1.0  # one long row, five of length 1: heavy padding
        uneven.weight[1:, 0] = 2.0
    assert not SparseLinear(uneven).ell
    x = torch.randn(2, 40)
    close(SparseLinear(uneven)(x), uneven(x), torch.float32)
    padded = constant_fan_in(nn.Linear(40, 8), 4, 0)
    with torch.no_grad():
        padded.weight[3] = 0  # a row emptied (as compaction may): padded, still ELL
    sparse = SparseLinear(padded)
    assert sparse.ell and sparse.ell_idx.shape == (8, 4)
    close(sparse(x), padded(x), torch.float32)


def test_ell_kernel_matches_its_torch_fallback():
    gen = torch.Generator().manual_seed(3)
    for dtype in DTYPES:
        x = torch.randn(5, 50, dtype=dtype, generator=gen)
        idx = torch.randint(0, 50, (13, 7), dtype=torch.int32, generator=gen)
        val = torch.randn(13, 7, dtype=dtype, generator=gen)
        close(_kernel.ell_mix(x, idx, val), _kernel._torch_ell_mix(x, idx, val), dtype)
        empty = _kernel.ell_mix(x, idx[:, :0], val[:, :0])  # rows of length 0
        assert torch.equal(empty, torch.zeros(5, 13, dtype=dtype))


def test_ell_linear_state_dict_and_torch_export():
    linear = constant_fan_in(nn.Linear(12, 10), 3, 1)
    sparse = sparse_layer(linear, "sparse")
    assert {"ell_idx", "ell_val"} <= set(sparse.state_dict())
    x = torch.randn(2, 12)  # few rows: the ELL kernel is the one traced
    program = torch.export.export(sparse, (x,))
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "graphwire.ell_mix.default" in ops, ops
    close(program.module()(x), linear(x), torch.float32)
