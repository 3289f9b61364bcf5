import math

import pytest
import torch
from torch import nn

from graphwire import (
    ConfigError,
    DataError,
    DNWOptimizer,
    GraphError,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from graphwire.training import load_dataset
from graphwire.training.data import TensorLoader, load_cifar10, load_digits, load_imagenet
from graphwire.training.distributed import DistInfo
from graphwire.training.optim import LRSchedule, build_optimizer, parameter_groups


def test_multistep_with_warmup_per_iteration():
    s = LRSchedule(ScheduleConfig("multistep", milestones=(2, 3), warmup_epochs=1), 4, 5)
    factors = [s(i) for i in range(20)]
    assert factors[:4] == [0.0, 0.25, 0.5, 0.75]  # linear warm-up over the first epoch
    assert factors[4:8] == [1.0] * 4
    assert factors[8:12] == pytest.approx([0.1] * 4) and factors[12] == pytest.approx(0.01)


def test_cosine_decays_per_iteration_to_min_lr():
    s = LRSchedule(ScheduleConfig("cosine", min_lr=0.1, warmup_epochs=0.5), 10, 2)
    values = [s(i) for i in range(21)]
    assert values[5] == 1.0 and values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values[5:-1], values[6:]))  # strictly decreasing
    assert values[13] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 15)))


def test_bad_schedule_and_config_name_the_problem():
    with pytest.raises(ConfigError, match="'cosine'"):
        ScheduleConfig("linear")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="OptimizerConfig.lr must be positive; got -0.1"):
        OptimizerConfig(lr=-0.1)
    for err in (ConfigError, DataError):
        assert not issubclass(err, GraphError)


def test_parameter_groups_split_edges_decay_and_no_decay(small_wired):
    model = small_wired()
    groups = parameter_groups(model, OptimizerConfig(no_decay_norm_bias=True, edge_weight_decay=0))
    by_name = {g["name"]: g for g in groups}
    assert by_name["edges"]["params"] == [model.graph.weight]
    assert by_name["edges"]["weight_decay"] == 0
    assert by_name["decay"]["params"] == [model.stem.weight]
    no_decay = {id(p) for p in by_name["no_decay"]["params"]}
    assert no_decay == {id(model.stem.bias), id(model.graph.node_op.bias)}
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.parameters()))


def test_build_optimizer_wraps_wired_models_only(small_wired):
    opt = build_optimizer(small_wired(), OptimizerConfig(lr=0.05, momentum=0.5))
    assert isinstance(opt, DNWOptimizer) and opt.param_groups[0]["momentum"] == 0.5
    plain = build_optimizer(nn.Linear(3, 2), OptimizerConfig())
    assert isinstance(plain, torch.optim.SGD)


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = load_digits(), load_digits()
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    other = load_digits(split_seed=1)
    assert not torch.equal(a.val.tensors[1], other.val.tensors[1])
    counts = torch.bincount(a.val.tensors[1], minlength=10).float()
    assert counts.min() >= 0.9 * counts.mean()  # every class held out in proportion
    flat_tr = {tuple(x.flatten().tolist()) for x in a.train.tensors[0]}
    assert not any(tuple(x.flatten().tolist()) in flat_tr for x in a.val.tensors[0][:50])
    assert abs(float(a.train.tensors[0].mean())) < 1e-4  # standardised on the training split
    assert load_digits(upscale=2).train.tensors[0].shape[-2:] == (16, 16)


def test_tensor_loader_shards_cover_the_data_once_and_depend_on_epoch():
    data = load_digits(limit=100).train
    shards = [
        TensorLoader(data, 7, shuffle=True, seed=3, info=DistInfo(rank=r, world_size=2))
        for r in range(2)
    ]
    seen = []
    for loader in shards:
        loader.set_epoch(0)
        seen.append(torch.cat([y for _, y in loader]))
    assert len(shards[0]) == len(shards[1]) == math.ceil(50 / 7)
    assert sorted(torch.cat(seen).tolist()) == sorted(data.tensors[1].tolist())
    shards[0].set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in shards[0]]), seen[0])


def test_missing_data_sets_say_what_and_where(tmp_path):
    with pytest.raises(DataError, match="data_dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="'digits'"):
        load_dataset("mnist")
    for fn in (load_cifar10, load_imagenet):
        with pytest.raises(DataError, match="torchvision|not found"):
            fn(tmp_path)


def test_normalisation_parameters_go_to_no_decay_by_public_class():
    model = nn.Sequential(
        nn.Linear(6, 6),
        nn.BatchNorm1d(6),
        nn.LayerNorm((2, 3)),  # a 2-D weight: found by its class, not its shape
        nn.GroupNorm(2, 6),
        nn.InstanceNorm1d(6, affine=True),
        nn.SyncBatchNorm(6),
    )
    groups = {
        g["name"]: g for g in parameter_groups(model, OptimizerConfig(no_decay_norm_bias=True))
    }
    assert [id(p) for p in groups["decay"]["params"]] == [id(model[0].weight)]
    norm_params = {id(p) for m in list(model)[1:] for p in m.parameters()}
    assert norm_params | {id(model[0].bias)} == {id(p) for p in groups["no_decay"]["params"]}
    import graphwire.training.optim as optim

    assert all(not n.__name__.startswith("_") for n in optim._NORMS)
