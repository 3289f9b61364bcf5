"""Plain C kernels built on first use with the system compiler and called via :mod:`ctypes`.

One builder for every native kernel of graphwire: the source is compiled with ``cc``
(``-O3 -march=native -fopenmp``) into a per-user cache keyed by the source, the flags,
the compiler and this CPU's features, and loaded once per process. No torch headers, so
a build takes about a second. When no compiler is available or the build fails,
:func:`load` returns ``None`` (with one warning) and callers use torch operations.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["load", "replace_counting"]

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_LOADED: dict[str, ctypes.CDLL | None] = {}


def _key(source: str) -> str:
    """What a build depends on: source, flags, machine and this CPU's features."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        flags = platform.processor()
    text = "\n".join([source, " ".join(FLAGS), platform.machine(), flags])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "graphwire" / "kernels"


def _build(name: str, source: str) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    target = _cache_dir() / f"{name}_{_key(source)}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, out = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
            src.write_text(source)
            cmd = [compiler, *FLAGS, str(src), "-o", str(out)]
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            os.replace(out, target)  # atomic: concurrent builders never see half a file
    return ctypes.CDLL(str(target))


def load(
    name: str, source: str, declare: Callable[[ctypes.CDLL], None], purpose: str
) -> ctypes.CDLL | None:
    """The library ``name`` built from ``source``, once per process; ``None`` if it cannot be.

    Args:
        name: File name stem of the library in the cache.
        source: The C source.
        declare: Sets ``argtypes`` and ``restype`` of the library's functions.
        purpose: What falls back to torch operations, for the warning on a failed build.
    """
    if name not in _LOADED:
        try:
            lib = _build(name, source)
            declare(lib)
        except (OSError, AttributeError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", b"") or b""
            warnings.warn(
                f"graphwire's native kernel {name!r} could not be built ({err}; "
                f"{detail.decode(errors='replace')[:300]}); {purpose}.",
                RuntimeWarning,
                stacklevel=3,
            )
            lib = None
        _LOADED[name] = lib
    return _LOADED[name]


_REPLACE_SOURCE = r"""
#include <stdint.h>

/* dst[i] = src[i] for bytes holding 0 or 1; counts[0] = how many went 0 -> 1, counts[1]
   how many went 1 -> 0. One pass; threads split the range. */
void replace_counting(uint8_t* dst, const uint8_t* src, int64_t n, int64_t* counts,
                      int threads) {
  int64_t added = 0, removed = 0;
  #pragma omp parallel for num_threads(threads) reduction(+: added, removed) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t d = dst[i], s = src[i];
    added += s > d;
    removed += d > s;
    dst[i] = s;
  }
  counts[0] = added;
  counts[1] = removed;
}
"""


def _declare_replace(lib: ctypes.CDLL) -> None:
    lib.replace_counting.argtypes = [ctypes.c_void_p] * 2 + [
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.replace_counting.restype = None


def replace_counting(dst: Tensor, src: Tensor) -> tuple[int, int]:
    """Copy the boolean ``src`` into ``dst`` in place; return ``(turned on, turned off)``.

    One pass over both on a CPU with the native kernel (no temporaries); torch
    comparisons and a copy otherwise. ``src`` must have ``dst``'s shape.
    """
    src = src.to(dst.device)
    lib = None
    if dst.device.type == "cpu" and dst.dtype == src.dtype == torch.bool and dst.numel() >= 1 << 16:
        lib = load("replace_counting", _REPLACE_SOURCE, _declare_replace, "torch ops count swaps")
    if lib is None or not (dst.is_contiguous() and src.is_contiguous()):
        added = int(torch.count_nonzero(src > dst))  # in src, not in dst
        removed = int(torch.count_nonzero(dst > src))
        dst.copy_(src)
        return added, removed
    counts = torch.zeros(2, dtype=torch.int64)
    lib.replace_counting(
        dst.data_ptr(), src.data_ptr(), dst.numel(), counts.data_ptr(), torch.get_num_threads()
    )
    return int(counts[0]), int(counts[1])
