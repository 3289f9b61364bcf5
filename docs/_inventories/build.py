"""Write the local intersphinx inventories the docs build reads (no network at build time).

The docs build runs offline, so ``intersphinx`` cannot fetch each project's
``objects.inv``. This script writes small inventories in Sphinx's version 2 format
(a four-line header, then zlib-compressed ``name domain:role priority uri dispname``
lines) listing the external objects graphwire's pages and docstrings refer to, with
their real public URLs. ``conf.py`` points ``intersphinx_mapping`` at
``(real base URL, local file)``; ``tests/docs`` checks the files match this script.

Add an entry here when the nitpicky build reports an external reference as missing,
then run ``python docs/_inventories/build.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: project key -> (project name, version, base URL, {name: (domain:role, relative uri)})
INVENTORIES: dict[str, tuple[str, str, str, dict[str, tuple[str, str]]]] = {
    "torch": (
        "PyTorch",
        "2.13",
        "https://pytorch.org/docs/stable/",
        {
            "torch.Tensor": ("py:class", "tensors.html#torch.Tensor"),
            "torch.Tensor.backward": (
                "py:method",
                "generated/torch.Tensor.backward.html#torch.Tensor.backward",
            ),
            "torch.Size": ("py:class", "size.html#torch.Size"),
            "torch.dtype": ("py:class", "tensor_attributes.html#torch.dtype"),
            "torch.device": ("py:class", "tensor_attributes.html#torch.device"),
            "torch.Generator": ("py:class", "generated/torch.Generator.html#torch.Generator"),
            "torch.topk": ("py:function", "generated/torch.topk.html#torch.topk"),
            "torch.inference_mode": (
                "py:class",
                "generated/torch.inference_mode.html#torch.inference_mode",
            ),
            "torch.no_grad": ("py:class", "generated/torch.no_grad.html#torch.no_grad"),
            "torch.compile": ("py:function", "generated/torch.compile.html#torch.compile"),
            "torch.save": ("py:function", "generated/torch.save.html#torch.save"),
            "torch.load": ("py:function", "generated/torch.load.html#torch.load"),
            "torch.nn.Module": ("py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            "torch.nn.modules.module.Module": (
                "py:class",
                "generated/torch.nn.Module.html#torch.nn.Module",
            ),
            "torch.nn.Module.state_dict": (
                "py:method",
                "generated/torch.nn.Module.html#torch.nn.Module.state_dict",
            ),
            "torch.nn.Module.load_state_dict": (
                "py:method",
                "generated/torch.nn.Module.html#torch.nn.Module.load_state_dict",
            ),
            "torch.nn.ModuleList": (
                "py:class",
                "generated/torch.nn.ModuleList.html#torch.nn.ModuleList",
            ),
            "torch.nn.Sequential": (
                "py:class",
                "generated/torch.nn.Sequential.html#torch.nn.Sequential",
            ),
            "torch.nn.Parameter": (
                "py:class",
                "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter",
            ),
            "torch.nn.parameter.Parameter": (
                "py:class",
                "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter",
            ),
            "torch.nn.Linear": ("py:class", "generated/torch.nn.Linear.html#torch.nn.Linear"),
            "torch.nn.Conv2d": ("py:class", "generated/torch.nn.Conv2d.html#torch.nn.Conv2d"),
            "torch.nn.Conv1d": ("py:class", "generated/torch.nn.Conv1d.html#torch.nn.Conv1d"),
            "torch.nn.Conv3d": ("py:class", "generated/torch.nn.Conv3d.html#torch.nn.Conv3d"),
            "torch.nn.MultiheadAttention": (
                "py:class",
                "generated/torch.nn.MultiheadAttention.html#torch.nn.MultiheadAttention",
            ),
            "torch.nn.BatchNorm2d": (
                "py:class",
                "generated/torch.nn.BatchNorm2d.html#torch.nn.BatchNorm2d",
            ),
            "torch.optim.Optimizer": ("py:class", "optim.html#torch.optim.Optimizer"),
            "torch.optim.optimizer.Optimizer": ("py:class", "optim.html#torch.optim.Optimizer"),
            "torch.optim.Optimizer.step": (
                "py:method",
                "generated/torch.optim.Optimizer.step.html#torch.optim.Optimizer.step",
            ),
            "torch.optim.SGD": ("py:class", "generated/torch.optim.SGD.html#torch.optim.SGD"),
            "torch.optim.lr_scheduler.LRScheduler": (
                "py:class",
                "generated/torch.optim.lr_scheduler.LRScheduler.html"
                "#torch.optim.lr_scheduler.LRScheduler",
            ),
            "torch.utils.data.Dataset": ("py:class", "data.html#torch.utils.data.Dataset"),
            "torch.utils.data.DataLoader": ("py:class", "data.html#torch.utils.data.DataLoader"),
            "torch.utils.data.dataloader.DataLoader": (
                "py:class",
                "data.html#torch.utils.data.DataLoader",
            ),
            "torch.utils.data.dataset.Dataset": ("py:class", "data.html#torch.utils.data.Dataset"),
            "torch.optim.lr_scheduler.LambdaLR": (
                "py:class",
                "generated/torch.optim.lr_scheduler.LambdaLR.html"
                "#torch.optim.lr_scheduler.LambdaLR",
            ),
            "torch.utils.data.dataset.TensorDataset": (
                "py:class",
                "data.html#torch.utils.data.TensorDataset",
            ),
            "torch.utils.data.TensorDataset": (
                "py:class",
                "data.html#torch.utils.data.TensorDataset",
            ),
            "torch.utils.data.DistributedSampler": (
                "py:class",
                "data.html#torch.utils.data.distributed.DistributedSampler",
            ),
            "torch.distributed": ("py:module", "distributed.html#module-torch.distributed"),
            "torch.distributed.init_process_group": (
                "py:function",
                "distributed.html#torch.distributed.init_process_group",
            ),
            "torch.nn.parallel.DistributedDataParallel": (
                "py:class",
                "generated/torch.nn.parallel.DistributedDataParallel.html"
                "#torch.nn.parallel.DistributedDataParallel",
            ),
            "torch.multiprocessing": (
                "py:module",
                "multiprocessing.html#module-torch.multiprocessing",
            ),
            "torch.multiprocessing.spawn": (
                "py:function",
                "multiprocessing.html#torch.multiprocessing.spawn",
            ),
            "torch.jit.script": ("py:function", "generated/torch.jit.script.html#torch.jit.script"),
            "torch.jit.trace": ("py:function", "generated/torch.jit.trace.html#torch.jit.trace"),
            "torch.export.export": ("py:function", "export.html#torch.export.export"),
            "torch.sparse": ("py:module", "sparse.html#module-torch.sparse"),
        },
    ),
    "torch_geometric": (
        "PyTorch Geometric",
        "2.8",
        "https://pytorch-geometric.readthedocs.io/en/latest/",
        {
            "torch_geometric.data.Data": (
                "py:class",
                "generated/torch_geometric.data.Data.html#torch_geometric.data.Data",
            ),
            "torch_geometric.utils.scatter": (
                "py:function",
                "modules/utils.html#torch_geometric.utils.scatter",
            ),
            "torch_geometric.utils.coalesce": (
                "py:function",
                "modules/utils.html#torch_geometric.utils.coalesce",
            ),
            "torch_geometric.utils.remove_self_loops": (
                "py:function",
                "modules/utils.html#torch_geometric.utils.remove_self_loops",
            ),
            "torch_geometric.nn.conv.MessagePassing": (
                "py:class",
                "generated/torch_geometric.nn.conv.MessagePassing.html"
                "#torch_geometric.nn.conv.MessagePassing",
            ),
        },
    ),
    "networkx": (
        "NetworkX",
        "3",
        "https://networkx.org/documentation/stable/",
        {
            "networkx.DiGraph": ("py:class", "reference/classes/digraph.html#networkx.DiGraph"),
            "networkx.classes.digraph.DiGraph": (
                "py:class",
                "reference/classes/digraph.html#networkx.DiGraph",
            ),
            "networkx.Graph": ("py:class", "reference/classes/graph.html#networkx.Graph"),
            "networkx.classes.graph.Graph": (
                "py:class",
                "reference/classes/graph.html#networkx.Graph",
            ),
            **{
                f"networkx.{name}": (
                    "py:function",
                    f"reference/generated/networkx.generators.random_graphs.{name}.html"
                    f"#networkx.generators.random_graphs.{name}",
                )
                for name in (
                    "gnp_random_graph",
                    "gnm_random_graph",
                    "watts_strogatz_graph",
                    "barabasi_albert_graph",
                )
            },
        },
    ),
    "torchdiffeq": (
        "torchdiffeq",
        "0.2",
        "https://github.com/rtqichen/torchdiffeq/blob/master/",
        {
            "torchdiffeq": ("py:module", "README.md"),
            "torchdiffeq.odeint": ("py:function", "README.md#basic-usage"),
            "torchdiffeq.odeint_adjoint": ("py:function", "README.md#basic-usage"),
        },
    ),
    "python": (
        "Python",
        "3",
        "https://docs.python.org/3/",
        {
            **{
                name: ("py:class", f"library/functions.html#{name}")
                for name in (
                    "int",
                    "float",
                    "str",
                    "bool",
                    "dict",
                    "list",
                    "tuple",
                    "range",
                    "object",
                )
            },
            **{
                f"collections.abc.{name}": (
                    "py:class",
                    f"library/collections.abc.html#collections.abc.{name}",
                )
                for name in ("Callable", "Iterable", "Iterator", "Mapping", "Sequence")
            },
            "ValueError": ("py:exception", "library/exceptions.html#ValueError"),
            "RuntimeError": ("py:exception", "library/exceptions.html#RuntimeError"),
            "abc.ABC": ("py:class", "library/abc.html#abc.ABC"),
            "argparse.ArgumentParser": (
                "py:class",
                "library/argparse.html#argparse.ArgumentParser",
            ),
            "argparse.Namespace": ("py:class", "library/argparse.html#argparse.Namespace"),
            "os.PathLike": ("py:class", "library/os.html#os.PathLike"),
            "pathlib.Path": ("py:class", "library/pathlib.html#pathlib.Path"),
            "typing.Protocol": ("py:class", "library/typing.html#typing.Protocol"),
            "typing.Any": ("py:data", "library/typing.html#typing.Any"),
            "dataclasses.dataclass": (
                "py:function",
                "library/dataclasses.html#dataclasses.dataclass",
            ),
            "multiprocessing": ("py:module", "library/multiprocessing.html#module-multiprocessing"),
        },
    ),
}


def with_defining_names(entries: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Add, for each class, the name Python reports for it (``torch.nn.modules.linear.Linear``
    for ``torch.nn.Linear``): autodoc writes base classes and type hints that way."""
    import importlib

    out = dict(entries)
    for name, (role, uri) in entries.items():
        if role != "py:class":
            continue
        module_name, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            continue
        full = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if full.split(".")[0] == name.split(".")[0]:
            out.setdefault(full, (role, uri))
    return out


def inventory_bytes(project: str, version: str, entries: dict[str, tuple[str, str]]) -> bytes:
    """The bytes of an ``objects.inv`` (version 2) listing ``entries``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    entries = with_defining_names(entries)
    lines = "".join(f"{name} {role} 1 {uri} -\n" for name, (role, uri) in sorted(entries.items()))
    return header + zlib.compress(lines.encode(), 9)


def write_all(directory: Path = HERE) -> list[Path]:
    """Write one ``<key>.inv`` per project into ``directory``; return the paths."""
    paths = []
    for key, (project, version, _base, entries) in INVENTORIES.items():
        path = directory / f"{key}.inv"
        path.write_bytes(inventory_bytes(project, version, entries))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print(f"wrote {p}")
