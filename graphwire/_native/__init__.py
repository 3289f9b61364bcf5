"""graphwire's native CPU kernels: C sources built on first use and called via :mod:`ctypes`.

The kernels are plain C11 files in ``graphwire/csrc/`` (shipped in the wheel), all
compiled together into one shared library per ISA variant:

- ``scalar``: no ISA flags, plain loops (on every CPU; the only variant off x86);
- ``avx2``: ``-mavx2 -mfma``, the AVX2 and FMA code paths;
- ``avx512``: ``-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma``, the AVX-512
  paths where there are some (the AVX2 ones elsewhere).

Every build uses ``-std=c11 -O3 -fPIC -shared -Wall -Wextra -Werror -ffp-contract=off``
(the last keeps every compiler from fusing multiply-adds that the sources do not ask
for), never ``-march=native``: a machine builds and tests each variant it can run. The
scalar library's ``gw_cpu_level()`` (``__builtin_cpu_supports``, which also checks that
the operating system saves the vector registers) tells which variants this CPU
executes; each library's ``gw_built_level()`` is checked against the variant it was
built as, so a library always holds the code paths its name says.

Which variant loads is read from the environment variable ``GRAPHWIRE_KERNELS`` once per
process, at the first kernel call: unset, empty or ``auto`` picks the best variant this
CPU runs, ``off`` loads none (every caller uses its torch fallback), and ``scalar``,
``avx2`` or ``avx512`` forces that variant. Any other value, or a variant this CPU
cannot execute, raises :class:`~graphwire.errors.ConfigError`.
``python -m graphwire._native --runnable`` prints the variants this CPU runs.

The compiler is ``$CC`` where set, else ``cc``, else ``gcc``. A library is cached per
user (``$XDG_CACHE_HOME/graphwire/kernels``, by default ``~/.cache/graphwire/kernels``)
under a name holding the variant and a hash of all sources, the flags, the compiler's
path and the first line of its ``--version``, and the machine; it is built into a
temporary file and renamed into place (concurrent builders never see half a file), and
built and loaded at most once per process.

One parallel runtime, torch's: where torch runs on GNU OpenMP (its Linux wheels ship
``torch/lib/libgomp.so.1``) and the compiler is GCC, the kernels are compiled with
``-fopenmp`` and linked against that very file (with an rpath to its folder), so the
process maps one ``libgomp``; the callers pass :func:`torch.get_num_threads` as the
thread count. Elsewhere (torch on LLVM's ``libomp``, as on macOS, or a compiler without
OpenMP) the kernels are built without OpenMP and run serially: linking a second
OpenMP runtime into torch's process is what this avoids. A failed OpenMP build is
retried without it.

When no compiler is found or the build fails, :func:`load` returns ``None`` after one
:class:`RuntimeWarning`, and every caller uses torch operations.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from graphwire.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "VARIANTS",
    "load",
    "loaded_variant",
    "replace_counting",
    "runnable",
    "zero_unselected",
]

#: The ISA variants, from the most portable to the fastest.
VARIANTS = ("scalar", "avx2", "avx512")

#: The environment variable that chooses the variant (or ``off``).
ENV_VAR = "GRAPHWIRE_KERNELS"

#: Flags of every build; then the variant's, then OpenMP's.
FLAGS = [
    "-std=c11",
    "-O3",
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffp-contract=off",
]
ISA_FLAGS = {
    "scalar": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
}

SOURCE_DIR = Path(__file__).resolve().parent.parent / "csrc"

_FALLBACK = "frozen models use dense products, and selection and mask updates use torch operations"

# Switch for the tests: False builds without OpenMP (as where no OpenMP runtime is found).
_USE_OPENMP = True

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

#: The C functions of the library: name -> (result type, argument types).
_SIGNATURES: dict[str, tuple[type | None, list[type]]] = {
    "gw_cpu_level": (_INT, []),
    "gw_built_level": (_INT, []),
    "gw_built_openmp": (_INT, []),
    "gw_csr_mix_f32": (_INT, [_P] * 5 + [_I64] * 4 + [_INT]),
    "gw_csr_mix_f64": (_INT, [_P] * 5 + [_I64] * 4 + [_INT]),
    "gw_shift_mix_f32": (_INT, [_P] * 7 + [_I64] * 8 + [_INT]),
    "gw_shift_mix_f64": (_INT, [_P] * 7 + [_I64] * 8 + [_INT]),
    "gw_sparse_conv_f32": (_INT, [_P] * 10 + [_INT, _INT]),
    "gw_csr_linear_f32": (_INT, [_P] * 6 + [_I64] * 3 + [_INT, _I64]),
    "gw_ell_mix_f32": (_INT, [_P] * 4 + [_I64] * 4 + [_INT]),
    "gw_ell_mix_f64": (_INT, [_P] * 4 + [_I64] * 4 + [_INT]),
    "gw_sddmm_f64": (_INT, [_P] * 5 + [_I64] * 2 + [_INT]),
    "gw_conv_wgrad_f32": (_INT, [_P] * 8 + [_INT]),
    "gw_linear_wgrad_f32": (_INT, [_P] * 6 + [_I64] * 3 + [_INT]),
    "gw_topk_mask_f32": (_INT, [_P, _I64, _I64, _INT, _P, _INT]),
    "gw_replace_counting": (None, [_P, _P, _I64, _P, _INT]),
    "gw_mask_pattern": (_I64, [_P, _I64, _I64, _I64] + [_P] * 6 + [_INT]),
    "gw_conv_pattern": (_I64, [_P, _P, _I64] + [_P] * 10),
    "gw_count_set": (_I64, [_P, _I64]),
    "gw_zero_unselected_f32": (None, [_P, _P, _I64, _INT]),
}


@dataclass(frozen=True)
class _Loaded:
    """What this process loaded: the setting read, the variant and its library."""

    setting: str
    variant: str | None
    lib: ctypes.CDLL | None


_LOADED: _Loaded | None = None  # set at the first load(); tests reset it
_LIBS: dict[str, ctypes.CDLL] = {}  # built and loaded libraries, by variant
_LOCK = threading.RLock()


def _is_x86() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64", "i386", "i686", "x86"}


def _compiler() -> list[str]:
    """The compiler command: ``$CC`` (which may hold arguments), else ``cc``, else ``gcc``."""
    given = os.environ.get("CC", "").strip()
    if given:
        parts = shlex.split(given)
        path = shutil.which(parts[0])
        if path is None:
            raise OSError(f"CC={given!r} names no program on PATH")
        return [path, *parts[1:]]
    path = shutil.which("cc") or shutil.which("gcc")
    if path is None:
        raise OSError("no C compiler: CC is not set and neither cc nor gcc is on PATH")
    return [path]


_VERSIONS: dict[tuple[str, ...], str] = {}


def _version(compiler: list[str]) -> str:
    """The first line of the compiler's ``--version`` (once per process and compiler)."""
    key = tuple(compiler)
    if key not in _VERSIONS:
        out = subprocess.run(
            [*compiler, "--version"], check=True, capture_output=True, text=True, timeout=60
        )
        _VERSIONS[key] = (out.stdout.strip().splitlines() or [""])[0]
    return _VERSIONS[key]


def _torch_openmp() -> Path | None:
    """The GNU OpenMP runtime torch runs on; ``None`` where there is none.

    A ``libgomp`` in torch's library folder (its Linux wheels), else the one ``libgomp``
    mapped into this process; none where torch runs on LLVM's ``libomp`` (macOS).
    """
    found = sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*"))
    if found:
        return found[0]
    mapped = {p for p in _mapped_files() if p.name.startswith("libgomp")}
    return mapped.pop() if len(mapped) == 1 else None


def _mapped_files() -> set[Path]:
    """The files mapped into this process (Linux's ``/proc/self/maps``; empty elsewhere)."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return {Path(line.split(maxsplit=5)[5]) for line in text.splitlines() if "/" in line}


def _openmp_flags(compiler: list[str]) -> list[str]:
    """``-fopenmp`` and the link to torch's ``libgomp``; none where that cannot be had."""
    runtime = _torch_openmp() if _USE_OPENMP else None
    if runtime is None or "clang" in _version(compiler).lower():
        return []  # clang's -fopenmp would link LLVM's runtime: a second one
    return ["-fopenmp", str(runtime), f"-Wl,-rpath,{runtime.parent}"]


def _sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.c"))


def _key(variant: str, compiler: list[str], flags: list[str]) -> str:
    """What a build depends on: every source and header, flags, variant, compiler, machine."""
    digest = hashlib.sha256()
    for path in sorted([*SOURCE_DIR.glob("*.c"), *SOURCE_DIR.glob("*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for part in (variant, " ".join([*FLAGS, *ISA_FLAGS[variant], *flags])):
        digest.update(part.encode() + b"\0")
    for part in (*compiler, _version(compiler)):
        digest.update(part.encode() + b"\0")
    for part in (platform.machine(), sys.platform):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "graphwire" / "kernels"


def _compile(variant: str, compiler: list[str], flags: list[str]) -> Path:
    """The cached library of ``variant`` built with ``flags``; built first if missing."""
    target = _cache_dir() / f"kernels_{variant}_{_key(variant, compiler, flags)}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            sources = [str(path) for path in _sources()]
            cmd = [*compiler, *FLAGS, *ISA_FLAGS[variant], *sources, "-o", str(out), *flags]
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
            os.replace(out, target)  # atomic: concurrent builders never see half a file
    return target


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype


def _library(variant: str) -> ctypes.CDLL:
    """The library of ``variant``, built (with OpenMP where it can be) and loaded once."""
    with _LOCK:
        if variant not in _LIBS:
            compiler = _compiler()
            flags = _openmp_flags(compiler)
            try:
                path = _compile(variant, compiler, flags)
            except subprocess.CalledProcessError:
                if not flags:
                    raise
                path = _compile(variant, compiler, [])  # serial kernels, still correct
            lib = ctypes.CDLL(str(path))
            _declare(lib)
            built = VARIANTS[lib.gw_built_level()]
            if built != variant:
                raise OSError(f"the {variant!r} library {path} holds the {built!r} code paths")
            _LIBS[variant] = lib
        return _LIBS[variant]


def runnable() -> tuple[str, ...]:
    """The variants this CPU executes, most portable first (builds the scalar library).

    Raises:
        OSError: if there is no compiler on x86 (where the scalar library tells).
        subprocess.CalledProcessError: if the scalar library does not build.
    """
    if not _is_x86():
        return ("scalar",)
    return VARIANTS[: _library("scalar").gw_cpu_level() + 1]


def _setting() -> str:
    """``GRAPHWIRE_KERNELS``, checked: ``auto``, ``off`` or a variant's name."""
    raw = os.environ.get(ENV_VAR, "")
    value = raw.strip().lower() or "auto"
    if value not in ("auto", "off", *VARIANTS):
        valid = ", ".join(repr(v) for v in ("auto", "off", *VARIANTS))
        raise ConfigError(f"{ENV_VAR} must be one of {valid}; got {raw!r}.")
    return value


def _load() -> _Loaded:
    setting = _setting()
    if setting == "off":
        return _Loaded(setting, None, None)
    try:
        variants = runnable()
        if setting != "auto" and setting not in variants:
            valid = ", ".join(repr(v) for v in ("auto", "off", *variants))
            raise ConfigError(
                f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} names a variant this CPU cannot "
                f"execute; valid here: {valid}."
            )
        variant = variants[-1] if setting == "auto" else setting
        return _Loaded(setting, variant, _library(variant))
    except (OSError, AttributeError, subprocess.SubprocessError) as err:
        detail = (getattr(err, "stderr", b"") or b"").decode(errors="replace").strip()
        warnings.warn(
            f"graphwire's native kernels could not be built ({err}"
            f"{'; ' + detail[:600] if detail else ''}); {_FALLBACK}.",
            RuntimeWarning,
            stacklevel=3,
        )
        return _Loaded(setting, None, None)


def load() -> ctypes.CDLL | None:
    """The kernel library of this process, built and loaded on the first call.

    Returns:
        The library of the variant ``GRAPHWIRE_KERNELS`` chooses, with every function's
        argument and result types set; ``None`` with ``GRAPHWIRE_KERNELS=off`` or where
        it cannot be built (after one :class:`RuntimeWarning`).

    Raises:
        ConfigError: if ``GRAPHWIRE_KERNELS`` holds an unknown value or a variant this
            CPU cannot execute.
    """
    global _LOADED
    if _LOADED is None:
        with _LOCK:
            if _LOADED is None:
                _LOADED = _load()
    return _LOADED.lib


def loaded_variant() -> str | None:
    """The variant :func:`load` loaded (loading it first); ``None`` when off or not built."""
    load()
    return None if _LOADED is None else _LOADED.variant


def replace_counting(dst: Tensor, src: Tensor) -> tuple[int, int]:
    """Copy the boolean ``src`` into ``dst`` in place; return ``(turned on, turned off)``.

    One pass over both on a CPU with the native kernel (no temporaries); torch
    comparisons and a copy otherwise. ``src`` must have ``dst``'s shape.
    """
    src = src.to(dst.device)
    lib = None
    if dst.device.type == "cpu" and dst.dtype == src.dtype == torch.bool and dst.numel() >= 1 << 16:
        lib = load()
    if lib is None or not (dst.is_contiguous() and src.is_contiguous()):
        added = int(torch.count_nonzero(src > dst))  # in src, not in dst
        removed = int(torch.count_nonzero(dst > src))
        dst.copy_(src)
        return added, removed
    counts = torch.zeros(2, dtype=torch.int64)
    lib.gw_replace_counting(
        dst.data_ptr(), src.data_ptr(), dst.numel(), counts.data_ptr(), torch.get_num_threads()
    )
    return int(counts[0]), int(counts[1])


def zero_unselected(grad: Tensor, mask: Tensor) -> None:
    """Zero ``grad`` in place where the boolean ``mask`` (of its shape) is not set.

    One pass on a CPU with the native kernel for float32 (no float copy of the mask);
    ``grad.mul_(mask)`` otherwise. (Where the kernel runs, an unselected inf or NaN
    gradient becomes 0, not NaN.)

    Example:
        >>> import torch
        >>> from graphwire._native import zero_unselected
        >>> g = torch.tensor([1.0, 2.0, 3.0])
        >>> zero_unselected(g, torch.tensor([True, False, True])); g.tolist()
        [1.0, 0.0, 3.0]
    """
    lib = None
    usable = grad.dtype == torch.float32 and mask.dtype == torch.bool and grad.is_cpu
    if usable and mask.device == grad.device and grad.numel() >= 1 << 14:
        lib = load()
    if lib is None or not (grad.is_contiguous() and mask.is_contiguous()):
        grad.mul_(mask)
        return
    lib.gw_zero_unselected_f32(
        grad.data_ptr(), mask.data_ptr(), grad.numel(), torch.get_num_threads()
    )
