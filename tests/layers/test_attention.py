"""``sparsify`` on attention and on ``Linear`` subclasses; ``WiredMultiheadAttention``."""

import itertools
import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

import graphwire
from graphwire import ConfigError, DNWOptimizer
from graphwire.export import SparseLinear
from graphwire.layers import WiredLinear, WiredMultiheadAttention, sparsify
from graphwire.wiring import SharedBudget

ATOL = 1e-5


def inputs(gen, batch_first, kdim, batched=True):
    length, source, batch = 4, 5, 3
    if not batched:
        return (
            torch.randn(length, 8, generator=gen),
            torch.randn(source, kdim, generator=gen),
            torch.randn(source, kdim, generator=gen),
        )
    shape = (lambda n, d: (batch, n, d)) if batch_first else (lambda n, d: (n, batch, d))
    return (
        torch.randn(*shape(length, 8), generator=gen),
        torch.randn(*shape(source, kdim), generator=gen),
        torch.randn(*shape(source, kdim), generator=gen),
    )


def masks(gen, batched=True):
    length, source, batch, heads = 4, 5, 3, 2
    pad = torch.rand((batch, source) if batched else (source,), generator=gen) < 0.4
    pad[..., 0] = False  # every query sees at least one key
    bool_mask = torch.rand(length, source, generator=gen) < 0.4
    bool_mask[:, 0] = False
    causal = torch.ones(length, source, dtype=torch.bool).triu(1)
    float_3d = torch.randn((batch * heads if batched else heads), length, source, generator=gen)
    return [
        {},
        {"key_padding_mask": pad},
        {"attn_mask": bool_mask},
        {"attn_mask": float_3d, "key_padding_mask": pad.float().masked_fill(pad, -1e9)},
        {"attn_mask": causal, "is_causal": True, "need_weights": False},
        {"attn_mask": bool_mask, "need_weights": False},
        {"average_attn_weights": False, "key_padding_mask": pad},
    ]


@pytest.mark.parametrize(
    "batch_first,kdim,bias", list(itertools.product([False, True], [None, 6], [True, False]))
)
def test_sparsify_attention_at_density_one_keeps_behaviour(batch_first, kdim, bias):
    gen = torch.Generator().manual_seed(0)
    dense = nn.MultiheadAttention(8, 2, bias=bias, kdim=kdim, vdim=kdim, batch_first=batch_first)
    dense.eval()
    wired = sparsify(nn.Sequential(dense), density=1.0)[0].eval()
    assert isinstance(wired, WiredMultiheadAttention)
    assert all(isinstance(p, WiredLinear) for p in wired.projections())
    for batched in (True, False):
        q, k, v = inputs(gen, batch_first, kdim or 8, batched)
        for kwargs in masks(gen, batched):
            want, want_w = dense(q, k, v, **kwargs)
            got, got_w = wired(q, k, v, **kwargs)
            torch.testing.assert_close(got, want, rtol=0, atol=ATOL)
            if want_w is None:
                assert got_w is None
            else:
                torch.testing.assert_close(got_w, want_w, rtol=0, atol=ATOL)


def test_projections_are_selected_and_trained():
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True), 2
    )
    model = sparsify(enc, density=0.2, seed=0)
    wired = [m for m in model.modules() if isinstance(m, WiredLinear)]
    assert len(wired) == 12  # (q, k, v, out, linear1, linear2) x 2
    assert all(int(m.edge_mask.sum()) == round(0.2 * m.weight.numel()) for m in wired)
    opt = DNWOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x = torch.randn(2, 5, 16)
    q_proj = model.layers[0].self_attn.q_proj
    before = q_proj.weight.detach().clone()
    target = torch.randn(2, 5, 16)  # (a layer-normed output's squared norm is constant)
    (model(x) * target).sum().backward()
    assert q_proj.weight.grad is not None and bool((q_proj.weight.grad != 0).any())
    opt.step()
    assert not torch.equal(q_proj.weight.detach(), before)


@pytest.mark.parametrize("kernel", ["dense", "sparse", "auto"])
def test_transformer_encoder_sparsified_and_compiled(kernel):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), 2
    ).eval()
    x = torch.randn(2, 7, 32)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    same = sparsify(enc, density=1.0).eval()
    with torch.no_grad():
        want, got = enc(x, src_key_padding_mask=pad), same(x, src_key_padding_mask=pad)
    torch.testing.assert_close(got[~pad], want[~pad], rtol=0, atol=ATOL)
    model = sparsify(enc, density=0.1, seed=1).eval()
    fast = graphwire.freeze(model, kernel=kernel)
    assert "layers.0.self_attn.q_proj" in fast.layer_kernels
    if kernel == "sparse":
        assert isinstance(fast.layers[0].self_attn.out_proj, SparseLinear)
    with torch.inference_mode():
        expected = model(x, src_key_padding_mask=pad)
        torch.testing.assert_close(fast(x, src_key_padding_mask=pad), expected, rtol=0, atol=ATOL)
    program = torch.export.export(fast, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=ATOL)


def test_linear_subclasses_are_converted_unless_they_change_forward():
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    net = nn.Sequential(NonDynamicallyQuantizableLinear(4, 4), Scaled(4, 4))
    with pytest.warns(
        UserWarning, match=r"left layer '1' \(Scaled\) dense: it subclasses nn.Linear"
    ):
        model = sparsify(net, density=0.5)
    assert isinstance(model[0], WiredLinear)
    assert type(model[1]) is Scaled
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no Linear"):
        sparsify(model, density=1.0)  # wired layers are not wired again


def test_unsupported_attention_stays_dense_with_a_warning():
    net = nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True), nn.Linear(8, 8))
    with pytest.warns(UserWarning, match=r"left nn.MultiheadAttention '0' dense \(parameters "):
        model = sparsify(net, density=0.5)
    assert type(model[0]) is nn.MultiheadAttention
    assert type(model[0].out_proj) is NonDynamicallyQuantizableLinear  # not wired on its own
    assert isinstance(model[1], WiredLinear)
    with pytest.raises(ConfigError, match="add_bias_kv or add_zero_attn"):
        WiredMultiheadAttention.from_dense(net[0])


def test_built_directly_and_errors():
    attn = WiredMultiheadAttention(16, 4, density=0.25, seed=0)
    assert all(int(p.edge_mask.sum()) == 64 for p in attn.projections())
    with pytest.raises(ConfigError, match="num_heads must divide embed_dim"):
        WiredMultiheadAttention(10, 3, density=0.5)
    x = torch.randn(3, 2, 16)
    with pytest.raises(ConfigError, match="is_causal=True needs attn_mask"):
        attn(x, x, x, is_causal=True)
    dense = nn.MultiheadAttention(16, 4).eval()
    wired = WiredMultiheadAttention.from_dense(dense).eval()
    SharedBudget(list(wired.projections()), density=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(wired(x, x, x)[0], dense(x, x, x)[0], rtol=0, atol=ATOL)
