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

__all__ = ["load", "same_bytes"]

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


def _libc_memcmp():
    try:
        libc = ctypes.CDLL(None)
        fn = libc.memcmp
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MEMCMP = _libc_memcmp()


def same_bytes(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` have one shape, dtype and device and hold the same bytes.

    Bitwise equality: a NaN equals itself, ``-0.0`` differs from ``0.0``. Contiguous CPU
    tensors are compared by the C library's ``memcmp`` (several times faster than
    ``torch.equal``, which matters when it runs at every call), others by
    ``torch.equal``.
    """
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if _MEMCMP is not None and a.device.type == "cpu" and a.is_contiguous() and b.is_contiguous():
        size = a.numel() * a.element_size()
        return size == 0 or _MEMCMP(a.data_ptr(), b.data_ptr(), size) == 0
    return torch.equal(a, b)
