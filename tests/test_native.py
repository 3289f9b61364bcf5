"""The one native builder: variants, GRAPHWIRE_KERNELS, the cache, fallbacks, one OpenMP runtime."""

import ctypes
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import graphwire
from graphwire import _native
from graphwire._native import ops as _kernel
from graphwire.errors import ConfigError
from graphwire.wiring import _select

ROOT = Path(__file__).resolve().parents[1]


def _have_compiler() -> bool:
    try:
        _native._compiler()
    except OSError:
        return False
    return True


needs_compiler = pytest.mark.skipif(not _have_compiler(), reason="no C compiler")

#: The variants this machine builds (every one on x86: an AVX-512 CPU also compiles the
#: others) and the ones it runs.
BUILT = _native.VARIANTS if _native._is_x86() else ("scalar",)
RUNNABLE = _native.runnable() if _have_compiler() else ()


@pytest.fixture
def fresh(monkeypatch):
    """No library loaded or built in this process yet (as in a new process)."""
    monkeypatch.setattr(_native, "_LOADED", None)
    monkeypatch.setattr(_native, "_LIBS", {})


@pytest.fixture
def empty_cache(fresh, tmp_path, monkeypatch):
    """As ``fresh``, with an empty cache folder: the folder libraries are built into."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "graphwire" / "kernels"


def _mix_case(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(9, 16, generator=gen, dtype=dtype)
    a[torch.rand(9, 16, generator=gen) < 0.6] = 0
    idx = a.nonzero()
    rowptr = torch.zeros(10, dtype=torch.int64)
    rowptr[1:] = torch.bincount(idx[:, 0], minlength=9).cumsum(0)
    x = torch.randn(2, 16, 130, generator=gen, dtype=dtype)
    return a, x, (rowptr, idx[:, 1].contiguous(), a[idx[:, 0], idx[:, 1]].contiguous(), 9)


def _kernels_agree_with_torch():
    """Every kernel family once, against torch, with two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, x, args = _mix_case()
        torch.testing.assert_close(_kernel.csr_mix(x, *args), a @ x, rtol=1e-5, atol=1e-5)
        xl = torch.randn(70, 16)
        torch.testing.assert_close(_kernel.csr_linear(xl, *args[:3], None, 9), xl @ a.T)
        scores = torch.randn(_select.MIN_SIZE * 2 + 5)
        mask = _select.topk_mask(scores, 100, magnitude=True)  # None: the caller uses torch
        assert (mask is None) == (_native.load() is None)
        if mask is not None:
            assert mask.sum() == 100 and bool(mask[scores.abs().topk(100).indices].all())
        dst, src = torch.rand(1 << 17) < 0.5, torch.rand(1 << 17) < 0.5
        want = (int((src & ~dst).sum()), int((dst & ~src).sum()))
        assert _native.replace_counting(dst, src) == want and torch.equal(dst, src)
    finally:
        torch.set_num_threads(threads)


def test_variant_flags_and_names():
    assert _native.VARIANTS == ("scalar", "avx2", "avx512")
    assert _native.ISA_FLAGS["scalar"] == []
    assert _native.ISA_FLAGS["avx2"] == ["-mavx2", "-mfma"]
    assert set(_native.ISA_FLAGS["avx512"]) >= {"-mavx512f", "-mavx512bw", "-mavx512vl"}
    assert not any("native" in flag for flag in _native.FLAGS)
    assert {"-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"} <= set(_native.FLAGS)


def test_no_c_source_in_python_strings():
    for path in (ROOT / "graphwire").rglob("*.py"):
        assert "#include <" not in path.read_text(), path


@needs_compiler
def test_runnable_variants_run_and_hold_their_own_code_paths():
    variants = _native.runnable()
    assert variants == _native.VARIANTS[: len(variants)] and variants[0] == "scalar"
    for level, variant in enumerate(variants):
        assert _native._library(variant).gw_built_level() == level


@needs_compiler
@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "serial"])
@pytest.mark.parametrize("variant", BUILT)
def test_every_variant_compiles_warning_free(variant, openmp, monkeypatch):
    """Each variant builds with -Werror here, runnable or not: an AVX-512 machine also
    compiles the AVX2 and scalar paths (cached, so only the first run compiles)."""
    monkeypatch.setattr(_native, "_USE_OPENMP", openmp)
    compiler = _native._compiler()
    flags = _native._openmp_flags(compiler)
    assert _native._compile(variant, compiler, flags).exists()


@needs_compiler
def test_builds_once_into_the_cache(empty_cache, monkeypatch):
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "scalar")
    lib = _native.load()
    assert lib is not None and _native.loaded_variant() == "scalar"
    assert _native.load() is lib  # once per process
    built = list(empty_cache.glob("kernels_scalar_*.so"))
    assert len(built) == 1
    assert not [p for p in empty_cache.iterdir() if p.is_dir()]  # no temporary folder left
    monkeypatch.setattr(_native, "_LOADED", None)
    monkeypatch.setattr(_native, "_LIBS", {})
    mtime = built[0].stat().st_mtime_ns
    assert _native.load() is not None
    assert built[0].stat().st_mtime_ns == mtime  # a new process reuses the file


@needs_compiler
def test_cache_key_names_sources_flags_variant_and_compiler(tmp_path, monkeypatch):
    compiler = _native._compiler()
    key = _native._key("scalar", compiler, [])
    assert key == _native._key("scalar", compiler, [])
    assert key != _native._key("avx2", compiler, [])
    assert key != _native._key("scalar", compiler, ["-fopenmp"])
    monkeypatch.setitem(_native._VERSIONS, ("/elsewhere/cc",), _native._version(compiler))
    assert key != _native._key("scalar", ["/elsewhere/cc"], [])  # the compiler's path
    version = _native._version(compiler)
    monkeypatch.setitem(_native._VERSIONS, tuple(compiler), "cc (other) 99.0")
    assert key != _native._key("scalar", compiler, [])  # its --version
    monkeypatch.setitem(_native._VERSIONS, tuple(compiler), version)
    copy = tmp_path / "csrc"
    shutil.copytree(_native.SOURCE_DIR, copy)
    monkeypatch.setattr(_native, "SOURCE_DIR", copy)
    assert _native._key("scalar", compiler, []) == key
    (copy / "graphwire.h").write_text((copy / "graphwire.h").read_text() + "\n")
    assert _native._key("scalar", compiler, []) != key  # a header counts too


def test_cc_names_the_compiler(monkeypatch):
    monkeypatch.setenv("CC", f"{sys.executable} -q")
    assert _native._compiler() == [shutil.which(sys.executable), "-q"]
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.raises(OSError, match="CC='no-such-compiler-here'"):
        _native._compiler()


def test_off_loads_nothing_and_every_caller_uses_torch(empty_cache, monkeypatch):
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native.load() is None
        assert _native.loaded_variant() is None
        assert not _kernel.available() and not _select.available()
        assert not graphwire.export.kernel_info()["available"]
        _kernels_agree_with_torch()
    assert not empty_cache.exists()  # nothing built


@pytest.mark.parametrize("value", ["avx1024", "native", "on"])
def test_unknown_setting_is_a_config_error(fresh, monkeypatch, value):
    monkeypatch.setenv("GRAPHWIRE_KERNELS", value)
    with pytest.raises(
        ConfigError, match=rf"GRAPHWIRE_KERNELS.*'auto', 'off', 'scalar'.*{value!r}"
    ):
        _native.load()
    with pytest.raises(ConfigError):  # not cached: asked again, refused again
        _kernel.available()


def test_a_variant_this_cpu_cannot_run_is_a_config_error(fresh, monkeypatch):
    monkeypatch.setattr(_native, "runnable", lambda: ("scalar",))
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "AVX512")
    with pytest.raises(ConfigError, match=r"GRAPHWIRE_KERNELS='AVX512'.*'auto', 'off', 'scalar'"):
        _native.load()


@needs_compiler
def test_auto_picks_the_best_runnable_variant(fresh, monkeypatch):
    monkeypatch.setenv("GRAPHWIRE_KERNELS", " Auto ")
    assert _native.loaded_variant() == _native.runnable()[-1]


@needs_compiler
def test_the_setting_is_read_once_per_process(fresh, monkeypatch):
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "scalar")
    lib = _native.load()
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "off")
    assert _native.load() is lib and _native.loaded_variant() == "scalar"


def test_no_compiler_warns_once_and_falls_back(empty_cache, monkeypatch):
    monkeypatch.delenv("GRAPHWIRE_KERNELS", raising=False)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(_native.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="(?s)no C compiler.*dense products.*torch operations"):
        assert _native.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later calls do not warn again
        assert not _kernel.available()
        _kernels_agree_with_torch()


@needs_compiler
def test_a_failed_build_warns_with_the_compiler_error_and_falls_back(
    empty_cache, tmp_path, monkeypatch
):
    broken = tmp_path / "csrc"
    shutil.copytree(_native.SOURCE_DIR, broken)
    (broken / "mask.c").write_text("this is not C\n")
    monkeypatch.setattr(_native, "SOURCE_DIR", broken)
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "scalar")
    with pytest.warns(RuntimeWarning, match="(?s)could not be built.*mask.c.*torch operations"):
        assert _native.load() is None
    assert not list(empty_cache.glob("*.so"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _kernels_agree_with_torch()


@needs_compiler
@pytest.mark.parametrize("variant", RUNNABLE)
def test_serial_build_without_openmp_is_correct(fresh, monkeypatch, variant):
    monkeypatch.setattr(_native, "_LIBS", {})  # runnable() loaded the OpenMP scalar library
    monkeypatch.setattr(_native, "_USE_OPENMP", False)
    monkeypatch.setenv("GRAPHWIRE_KERNELS", variant)
    lib = _native.load()
    assert lib is not None and lib.gw_built_openmp() == 0
    _kernels_agree_with_torch()


@needs_compiler
def test_a_failed_openmp_build_is_retried_serially(fresh, monkeypatch):
    monkeypatch.setattr(_native, "_openmp_flags", lambda compiler: ["-fopenmp", "-lno-such-lib"])
    monkeypatch.setenv("GRAPHWIRE_KERNELS", "scalar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = _native.load()
    assert lib is not None and lib.gw_built_openmp() == 0
    _kernels_agree_with_torch()


@needs_compiler
def test_openmp_builds_link_torchs_runtime():
    runtime = _native._torch_openmp()
    compiler = _native._compiler()
    if runtime is None or "clang" in _native._version(compiler).lower():
        # no GNU OpenMP of torch's to link, or clang: serial kernels, never a second runtime
        assert _native._openmp_flags(compiler) == []
        return
    flags = _native._openmp_flags(compiler)
    assert flags == ["-fopenmp", str(runtime), f"-Wl,-rpath,{runtime.parent}"]
    assert _native._library("scalar").gw_built_openmp() == 1


_ONE_RUNTIME = """
import torch
from graphwire import _native
from tests.test_native import _kernels_agree_with_torch

_kernels_agree_with_torch()  # every kernel family has run, on two threads
print(_native.loaded_variant())
for path in sorted({str(p) for p in _native._mapped_files() if p.name.startswith("libgomp")}):
    print(path)
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="no /proc")
def test_one_openmp_runtime_in_the_process():
    """torch and the kernels share torch's libgomp: a process maps one (a fresh process,
    as this one may hold other libraries' copies, such as scikit-learn's)."""
    out = subprocess.run(
        [sys.executable, "-c", _ONE_RUNTIME], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    variant, gomp = out[0], out[1:]
    assert len(gomp) == 1, gomp
    if variant != "None" and _native._torch_openmp() is not None:
        assert Path(gomp[0]) == _native._torch_openmp()


def test_runnable_command_prints_the_variants():
    out = subprocess.run(
        [sys.executable, "-m", "graphwire._native", "--runnable"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    assert out[0] == "scalar" and tuple(out) == _native.VARIANTS[: len(out)]
    if _have_compiler():
        assert tuple(out) == _native.runnable()


@needs_compiler
def test_the_library_declares_every_kernel():
    lib = _native._library(RUNNABLE[-1])  # the best variant, whatever GRAPHWIRE_KERNELS says
    for name, (restype, argtypes) in _native._SIGNATURES.items():
        fn = getattr(lib, name)
        assert fn.restype is restype and list(fn.argtypes) == argtypes
    assert isinstance(lib, ctypes.CDLL)


@pytest.mark.parametrize("size", [100, 1 << 17])  # torch path, native path
def test_replace_counting_copies_and_counts_both_ways(size):
    gen = torch.Generator().manual_seed(size)
    dst = torch.rand(size, generator=gen) < 0.3
    src = torch.rand(size, generator=gen) < 0.3
    before = dst.clone()
    added, removed = _native.replace_counting(dst, src)
    assert torch.equal(dst, src)
    assert added == int((src & ~before).sum()) and removed == int((before & ~src).sum())
    assert added > 0 and removed > 0
    assert _native.replace_counting(dst, src) == (0, 0)
