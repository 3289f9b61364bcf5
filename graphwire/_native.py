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

__all__ = ["PackedMask", "load", "replace_counting", "same_bytes", "same_bytes_at"]

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


_SPLIT_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* memcmp(a, b, n) == 0, the range split across threads (memory bandwidth scales with
   cores, a single memcmp does not). */
int same_split(const char* a, const char* b, int64_t n, int threads) {
  int differ = 0;
  #pragma omp parallel num_threads(threads) reduction(|: differ)
  {
    int t = 0, nt = 1;
    #ifdef _OPENMP
    t = omp_get_thread_num(); nt = omp_get_num_threads();
    #endif
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    if (hi > lo) differ = memcmp(a + lo, b + lo, (size_t)(hi - lo)) != 0;
  }
  return !differ;
}
"""

#: Contiguous CPU tensors of at least this many bytes are compared by all torch threads.
SPLIT_MIN_BYTES = 1 << 17


def _declare_split(lib: ctypes.CDLL) -> None:
    lib.same_split.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64, ctypes.c_int]
    lib.same_split.restype = ctypes.c_int


def same_bytes(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` have one shape, dtype and device and hold the same bytes.

    Bitwise equality: a NaN equals itself, ``-0.0`` differs from ``0.0``. Contiguous CPU
    tensors are compared by the C library's ``memcmp`` (several times faster than
    ``torch.equal``, which matters when it runs at every call), from
    :data:`SPLIT_MIN_BYTES` on by one ``memcmp`` per torch thread; others by
    ``torch.equal``.
    """
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if _MEMCMP is not None and a.device.type == "cpu" and a.is_contiguous() and b.is_contiguous():
        size = a.numel() * a.element_size()
        threads = torch.get_num_threads()
        if size >= SPLIT_MIN_BYTES and threads > 1:
            lib = load("same_split", _SPLIT_SOURCE, _declare_split, "one memcmp compares")
            if lib is not None:
                return lib.same_split(a.data_ptr(), b.data_ptr(), size, threads) == 1
        return size == 0 or _MEMCMP(a.data_ptr(), b.data_ptr(), size) == 0
    return torch.equal(a, b)


_SAME_AT_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* 1 when a[idx[i]] and b[i] hold the same bytes for every i < n, else 0; elements of
   `size` bytes (1, 2, 4 or 8). Stops at the first difference; the positions are split
   across `threads` (scattered reads that miss the cache overlap better on two cores). */
#define SAME_AT(T)                                                         \
    {                                                                      \
        const T *x = (const T *)a, *y = (const T *)b;                      \
        for (int64_t i = lo; i < hi; ++i)                                  \
            if (x[idx[i]] != y[i]) return 0;                               \
        return 1;                                                          \
    }
static int same_range(const void *a, const int64_t *idx, const void *b, int64_t lo,
                      int64_t hi, int size) {
    switch (size) {
    case 1: SAME_AT(uint8_t)
    case 2: SAME_AT(uint16_t)
    case 4: SAME_AT(uint32_t)
    case 8: SAME_AT(uint64_t)
    }
    return 0;
}
int same_at(const void *a, const int64_t *idx, const void *b, int64_t n, int size,
            int threads) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return -1;
    int differ = 0;
    #pragma omp parallel num_threads(threads) reduction(|: differ)
    {
        int t = 0, nt = 1;
        #ifdef _OPENMP
        t = omp_get_thread_num(); nt = omp_get_num_threads();
        #endif
        const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
        if (hi > lo) differ = !same_range(a, idx, b, lo, hi, size);
    }
    return !differ;
}
"""


def _declare_same_at(lib: ctypes.CDLL) -> None:
    lib.same_at.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.same_at.restype = ctypes.c_int


#: Gathered compares of at least this many positions are split across torch threads.
SAME_AT_SPLIT_MIN = 4096


def same_bytes_at(a: Tensor, index: Tensor, b: Tensor) -> bool:
    """Whether ``a[index]`` holds the same bytes as ``b`` (:func:`same_bytes` of the gather).

    ``a`` and ``b`` are 1-D, ``index`` an int64 tensor of positions into ``a`` (in
    range: it is not checked) of ``b``'s length. On a CPU with the native kernel the
    elements are compared in place, without the gathered copy, and the comparison stops
    at the first difference.
    """
    if a.dtype != b.dtype or a.device != b.device or index.shape != b.shape or a.dim() != 1:
        return False
    lib = None
    if a.device.type == "cpu" and a.element_size() in (1, 2, 4, 8):
        lib = load("same_at", _SAME_AT_SOURCE, _declare_same_at, "a torch gather compares")
    if (
        lib is None
        or not (a.is_contiguous() and b.is_contiguous() and index.is_contiguous())
        or index.dtype != torch.int64
        or index.device != a.device
    ):
        return same_bytes(a.index_select(0, index), b)
    n = b.numel()
    threads = torch.get_num_threads() if n >= SAME_AT_SPLIT_MIN else 1
    ptrs = (a.data_ptr(), index.data_ptr(), b.data_ptr())
    return n == 0 or lib.same_at(*ptrs, n, a.element_size(), threads) == 1


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


_BITS_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* bits[i / 8] holds (m[i] != 0) at bit i % 8 */
void pack_bits(const uint8_t* m, int64_t n, uint8_t* bits) {
  memset(bits, 0, (size_t)((n + 7) / 8));
  for (int64_t i = 0; i < n; ++i)
    if (m[i]) bits[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* [lo, hi) of m against its packed bits, lo a multiple of 32: 1 when all agree */
static int same_range(const uint8_t* m, int64_t lo, int64_t hi, const uint8_t* bits) {
  int64_t i = lo;
#ifdef __AVX2__
  const __m256i zero = _mm256_setzero_si256();
  for (; i + 32 <= hi; i += 32) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(m + i));
    const uint32_t set = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero));
    uint32_t want;
    memcpy(&want, bits + (i >> 3), 4);
    if (set != want) return 0;
  }
#endif
  for (; i < hi; ++i)
    if ((m[i] != 0) != ((bits[i >> 3] >> (i & 7)) & 1)) return 0;
  return 1;
}

/* 1 when (m[i] != 0) equals bit i of bits for every i < n; threads split the range */
int same_bits(const uint8_t* m, int64_t n, const uint8_t* bits, int threads) {
  const int64_t pieces = (n + 31) / 32;
  int differ = 0;
  #pragma omp parallel num_threads(threads) reduction(|: differ)
  {
    int t = 0, nt = 1;
    #ifdef _OPENMP
    t = omp_get_thread_num(); nt = omp_get_num_threads();
    #endif
    const int64_t lo = pieces * t / nt * 32, hi = pieces * (t + 1) / nt * 32;
    if (lo < n) differ = !same_range(m, lo, hi < n ? hi : n, bits);
  }
  return !differ;
}
"""


def _declare_bits(lib: ctypes.CDLL) -> None:
    lib.pack_bits.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    lib.pack_bits.restype = None
    lib.same_bits.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.same_bits.restype = ctypes.c_int


def _bits_lib() -> ctypes.CDLL | None:
    return load("bits", _BITS_SOURCE, _declare_bits, "masks are compared as bytes")


class PackedMask:
    """A boolean tensor's copy kept as packed bits (an eighth of its bytes).

    Compared with :meth:`same`, against a live mask, reading the mask once and the
    bits: a cache check over a large candidate set reads and evicts 9/16 of the bytes a
    byte-for-byte copy would. Exact: equal where every element has the same truth value.

    Args:
        mask: A contiguous CPU ``torch.bool`` tensor.
    """

    def __init__(self, mask: Tensor) -> None:
        self.shape, self.numel = mask.shape, mask.numel()
        self.bits = torch.empty((self.numel + 7) // 8 + 4, dtype=torch.uint8)  # +4: word reads
        lib = _bits_lib()
        if lib is None:
            raise RuntimeError("PackedMask needs the native kernel; check usable() first")
        lib.pack_bits(mask.data_ptr(), self.numel, self.bits.data_ptr())

    @staticmethod
    def usable(t: Tensor) -> bool:
        """Whether ``t`` can be kept packed: a contiguous CPU bool tensor, the kernel built."""
        return (
            t.dtype == torch.bool
            and t.device.type == "cpu"
            and t.is_contiguous()
            and t.numel() >= 1024
            and _bits_lib() is not None
        )

    def same(self, mask: Tensor) -> bool:
        """Whether ``mask`` has this copy's shape and truth values."""
        if mask.shape != self.shape or not self.usable(mask):
            return False
        lib = _bits_lib()
        threads = torch.get_num_threads() if self.numel >= SPLIT_MIN_BYTES else 1
        return lib.same_bits(mask.data_ptr(), self.numel, self.bits.data_ptr(), threads) == 1
