"""Build and load the native operator library.

The package installs as plain Python; the C++/CUDA code in ``csrc/`` is
compiled on first import with ``torch.utils.cpp_extension.load`` and ninja
into a cache directory keyed by the source hash, the torch version and the
compiler flags. A later import with the same key loads the cached library and
compiles nothing. ``python -m torch_fmha.build`` prebuilds.

The CPU part (schemas, checks, CPU kernels) is always built. The CUDA part
(the SM90 kernels and the CUDA op) is built when torch has CUDA and ``nvcc`` is
found; otherwise ``BuildInfo.cuda_reason`` says why not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

CPU_SOURCES = (
    "ops/registration.cpp",
    "ops/checks.cpp",
    "ops/cpu_math.cpp",
    "ops/fwd_cpu.cpp",
    "ops/bwd_cpu.cpp",
    "ops/autograd.cpp",
    "ops/quantize_op.cpp",
    "ops/quantize_cpu.cpp",
    "ops/kvcache_checks.cpp",
    "ops/kvcache_op.cpp",  # CompositeExplicitAutograd: CPU and CUDA (#ifdef TORCH_FMHA_WITH_CUDA)
    "ops/fp8_fwd_op.cpp",  # CompositeExplicitAutograd: quantize_qkv + fwd in one op
    "ops/merge_splits.cpp",  # its split merge: a loop here, a kernel launch on CUDA (#ifdef)
)
CUDA_OP_SOURCES = ("ops/fwd_cuda.cpp", "ops/quantize_cuda.cpp", "ops/kvcache_decode_cuda.cpp")
CUDA_KERNEL_GLOB = "launch/*.cu"  # one instantiation unit per variant + dispatch
CPU_HEADER_GLOBS = ("*.h", "ops/*.h")
CUDA_HEADER_GLOBS = ("launch/*.h", "launch/*.cuh", "kernel/*.cuh", "kernel/*.h")

CXX_FLAGS = ["-O3"]  # the C++ standard is cpp_extension's choice for this torch
NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-gencode=arch=compute_90a,code=sm_90a",  # wgmma / setmaxnreg need sm_90a
    "--expt-relaxed-constexpr",
    "-DNDEBUG",
    # CuTe's wgmma selectors offer N = 200..248, 176, 160, 144, ... only with this; without
    # it a tile of, e.g., 224 keys silently became seven 64x32 wgmmas per k-step (found in
    # session 16; the release tiles 256 / 192 / 128 are SASS-identical either way).
    "-DCUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED",
    # torch's extension defaults hide the half/bf16 operators CUTLASS uses.
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_HALF2_OPERATORS__",
]


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    library: Path
    cuda: bool
    cuda_reason: str  # why the CUDA part is absent ("" when built)
    debug_hang: bool
    seconds: float  # compile time; 0.0 when loaded from the cache


def source_root() -> Path:
    """Directory holding csrc/: the checkout, or the installed package data."""
    spec = importlib.util.find_spec("torch_fmha.csrc")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if (Path(loc) / "ops" / "registration.cpp").exists():
                return Path(loc)
    checkout = Path(__file__).resolve().parent.parent / "csrc"
    if (checkout / "ops" / "registration.cpp").exists():
        return checkout
    raise RuntimeError("torch_fmha: cannot find the csrc/ sources to build the native ops")


def cutlass_include() -> Path | None:
    env = os.environ.get("TORCH_FMHA_CUTLASS_INCLUDE")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("cutlass_library")
    if spec is None or not spec.origin:
        return None
    inc = Path(spec.origin).parent / "source" / "include"
    return inc if (inc / "cute").is_dir() else None


def _cuda_reason() -> str:
    """Empty when the CUDA part can be built here, else why not."""
    if os.environ.get("TORCH_FMHA_NO_CUDA") == "1":
        return "TORCH_FMHA_NO_CUDA=1 is set"
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "nvcc was not found (set CUDA_HOME)"
    if cutlass_include() is None:
        return "CUTLASS headers were not found (pip install nvidia-cutlass==4.2.0.0)"
    return ""


def shared_libstdcxx_flags() -> list[str]:
    """Link flags that make the library use the shared libstdc++ (the one torch uses).

    On the GPU machine (Ubuntu 24.04, g++ 13) a plain link put a static copy of libstdc++'s
    stream and locale code into the library: its own ``std::ostream::_M_insert<long>``, bound
    first since Python loads the library with RTLD_LOCAL, ran on the shared libstdc++'s
    locale. Every check message that printed an integer then ended the process with SIGSEGV
    instead of raising (issue 13; a cuda-gdb backtrace put the fault in ``_M_insert<long>``
    inside our ``.so``, and preloading the shared libstdc++ made the same call raise). The
    shared library named on the link line, after the objects, resolves those symbols, so the
    compiler's trailing ``-lstdc++`` has nothing left to take from a static archive.
    """
    cxx = shlex.split(os.environ.get("CXX", "c++")) or ["c++"]  # e.g. "ccache g++"
    try:
        path = subprocess.run([*cxx, "-print-file-name=libstdc++.so.6"], capture_output=True,
                              text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    if not (os.path.isabs(path) and os.path.isfile(path)):
        return []
    return [os.path.realpath(path)]  # normalised: a stable cache key


def _debug_hang() -> bool:
    return os.environ.get("TORCH_FMHA_DEBUG_HANG") == "1"


def _sources(root: Path, cuda: bool) -> list[Path]:
    srcs = [root / s for s in CPU_SOURCES]
    if cuda:
        srcs += [root / s for s in CUDA_OP_SOURCES]
        srcs += sorted(root.glob(CUDA_KERNEL_GLOB))
    return srcs


def _cache_key(root: Path, sources: list[Path], flags: list[str], cuda: bool) -> str:
    h = hashlib.sha256()
    files = set(sources)
    for g in CPU_HEADER_GLOBS + (CUDA_HEADER_GLOBS if cuda else ()):
        files.update(root.glob(g))
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    h.update(torch.__version__.encode())
    h.update(sys.version.encode())
    h.update(" ".join(flags).encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    env = os.environ.get("TORCH_FMHA_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "torch_fmha"
    return base


def build_and_load(verbose: bool = False) -> BuildInfo:
    """Compile (if not cached) and load the native library into torch.ops."""
    root = source_root()
    reason = _cuda_reason()
    cuda = reason == ""
    debug = _debug_hang()
    defines = ["-DTORCH_FMHA_WITH_CUDA"] if cuda else []
    if debug:
        defines.append("-DTORCH_FMHA_DEBUG_HANG=1")
    cxx = CXX_FLAGS + defines
    ldflags = shared_libstdcxx_flags()
    nvcc = NVCC_FLAGS + defines if cuda else []
    # Developer knob for kernel tuning experiments (tools/gpu_tune.sh): extra
    # nvcc flags, e.g. "-DTORCH_FMHA_TUNE_STAGES_128=3"; part of the cache key.
    nvcc += os.environ.get("TORCH_FMHA_NVCC_EXTRA", "").split() if cuda else []
    sources = _sources(root, cuda)
    key = _cache_key(root, sources, cxx + nvcc + ldflags, cuda)
    name = f"torch_fmha_C_{key}"
    build_dir = cache_dir() / name
    lib = build_dir / f"{name}.so"
    done = build_dir / "BUILD_OK"  # written after a complete build: never load a half-linked .so
    if lib.exists() and done.exists():
        torch.ops.load_library(str(lib))
        return BuildInfo(lib, cuda, reason, debug, 0.0)

    from torch.utils import cpp_extension

    build_dir.mkdir(parents=True, exist_ok=True)
    what = "CPU + CUDA sm_90a" if cuda else f"CPU only ({reason})"
    print(
        f"torch_fmha: compiling the native ops ({what}) into {build_dir}; "
        "first use only, this takes a minute or more...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    includes = [str(root)]
    if cuda:
        includes.append(str(cutlass_include()))
    cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources],
        extra_cflags=cxx,
        extra_cuda_cflags=nvcc,
        extra_ldflags=ldflags,
        extra_include_paths=includes,
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0
    done.write_text(f"{what}\n{seconds:.1f} s\n")
    print(f"torch_fmha: compiled in {seconds:.1f} s", file=sys.stderr, flush=True)
    return BuildInfo(lib, cuda, reason, debug, seconds)
