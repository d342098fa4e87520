"""Build and run a host-only C++ checker of tests/host_checks/ with nvcc or the host C++
compiler (no GPU needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sass_checks import split_functions
from torch_fmha._build import NVCC_FLAGS, cutlass_include, source_root

CHECKS = Path(__file__).resolve().parent / "host_checks"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


def _wheel_binaries(tool: str) -> list[Path]:
    """`tool` in the bin folders of NVIDIA's wheels (nvidia/cu13/bin, or cu12-style
    nvidia/<package>/bin). .ci/run installs nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm (which
    cuobjdump runs), so that the SASS tests run in CPU CI too."""
    try:
        import nvidia  # the namespace package of NVIDIA's wheels
    except ImportError:
        return []
    return [c for root in getattr(nvidia, "__path__", []) for c in sorted(Path(root).glob(f"*/bin/{tool}"))]


CUOBJDUMP = shutil.which("cuobjdump") or next((str(c) for c in _wheel_binaries("cuobjdump")), None)
# cuobjdump runs nvdisasm, from its own folder or PATH: the wheels' folders go first on PATH.
_CUOBJDUMP_ENV = dict(os.environ, PATH=os.pathsep.join(
    [*(str(c.parent) for c in _wheel_binaries("nvdisasm")), os.environ.get("PATH", "")])) if CUOBJDUMP else None
NO_NVCC = "nvcc not found (host-only CUDA compilation is needed)"
needs_nvcc = pytest.mark.skipif(NVCC is None, reason=NO_NVCC)
# Checkers that include the kernel headers (CuTe layouts) also need the CUTLASS
# headers (the nvidia-cutlass wheel; .ci/run installs it).
needs_cutlass = pytest.mark.skipif(NVCC is None or cutlass_include() is None,
                                   reason=NO_NVCC if NVCC is None else
                                   "CUTLASS headers (nvidia-cutlass wheel) not found")
needs_cuobjdump = pytest.mark.skipif(CUOBJDUMP is None, reason="cuobjdump not found")


def _cuda_include() -> Path | None:
    """The CUDA headers' folder: next to nvcc (which may be a wrapper script), $CUDA_HOME, /usr/local/cuda."""
    roots = [Path(NVCC).resolve().parent.parent] if NVCC else []
    roots += [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    roots.append(Path("/usr/local/cuda"))
    return next((r / "include" for r in roots if (r / "include" / "cuda_bf16.h").exists()), None)


# Checkers that run a kernel's device code on host threads (std::barrier: C++20) are built
# by the host C++ compiler against the CUDA headers, not by nvcc; plain host code (the
# decode split rule) without them (build_and_run_cxx(cuda_headers=False)).
CXX = shutil.which("c++") or shutil.which("g++")
CUDA_INCLUDE = _cuda_include()
needs_cxx_cuda_headers = pytest.mark.skipif(CXX is None or CUDA_INCLUDE is None,
                                            reason="needs a C++ compiler and the CUDA headers (cuda_bf16.h)")
needs_cxx = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (c++ or g++)")


def build_and_run_cxx(source: str, tmp_path: Path, run_timeout: int, cuda_headers: bool = True) -> list[str]:
    """Compiles tests/host_checks/<source> with the host C++ compiler (C++20, threads, the
    CUDA headers unless `cuda_headers` is false, and csrc on the include path), runs it,
    asserts both exit 0; its stdout lines."""
    exe = tmp_path / Path(source).stem
    includes = [f"-I{CUDA_INCLUDE}"] if cuda_headers else []
    build = subprocess.run([CXX, "-std=c++20", "-O1", "-pthread", *includes, f"-I{source_root()}",
                            str(CHECKS / source), "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=run_timeout)
    assert run.returncode == 0, f"rc {run.returncode}\n" + run.stdout[-5000:] + run.stderr[-2000:]
    return run.stdout.splitlines()


def build_and_run(source: str, tmp_path: Path, flags: list[str] = (), build_timeout: int = 300,
                  cutlass: bool = False) -> list[str]:
    """Compiles tests/host_checks/<source> with `flags` (and, with `cutlass`, the
    CUTLASS and csrc include paths), runs it, asserts both exit 0; its stdout lines."""
    if cutlass:
        flags = [*flags, "--expt-relaxed-constexpr", "-DCUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED",
                 f"-I{cutlass_include()}", f"-I{source_root()}"]  # as the kernel build (_build.py)
        build_timeout = max(build_timeout, 600)
    exe = tmp_path / Path(source).stem
    build = subprocess.run([NVCC, "-std=c++17", *flags, str(CHECKS / source), "-o", str(exe)],
                           capture_output=True, text=True, timeout=build_timeout)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.splitlines()


# launch_unit_sass's results in this process, by (unit, flags): several SASS tests read the same
# unit (the D = 128 packed-v one four times), and each compile takes minutes on CI's 2 cores.
_SASS_TEXT: dict[tuple[str, tuple[str, ...]], str] = {}


def launch_unit_sass(unit: str, tmp_path: Path, flags: tuple[str, ...] = ()) -> str:
    """csrc/launch/<unit>.cu compiled for sm_90a with the library build's flags (and `flags`,
    e.g. a tuning knob's -D), as `cuobjdump -sass` text (the SASS tests split it with
    sass_checks.split_functions). Compiled once per process for each (unit, flags): the
    sources do not change while the tests run."""
    key = (unit, tuple(flags))
    if key not in _SASS_TEXT:
        _SASS_TEXT[key] = _compile_launch_unit(unit, tmp_path, flags)
    return _SASS_TEXT[key]


def _compile_launch_unit(unit: str, tmp_path: Path, flags: tuple[str, ...]) -> str:
    cubin = tmp_path / f"{unit}.cubin"
    build = subprocess.run(
        [NVCC, *NVCC_FLAGS, *flags, "-DTORCH_FMHA_WITH_CUDA", f"-I{cutlass_include()}", f"-I{source_root()}", "-cubin",
         str(source_root() / "launch" / f"{unit}.cu"), "-o", str(cubin)],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    dump = subprocess.run([CUOBJDUMP, "-sass", str(cubin)], capture_output=True, text=True, timeout=300,
                          env=_CUOBJDUMP_ENV)
    assert dump.returncode == 0 and "Function :" in dump.stdout, dump.stderr[-2000:]
    return dump.stdout


def launch_unit_kernels(unit: str, tmp_path: Path, name_pattern: str,
                        flags: tuple[str, ...] = ()) -> list[tuple[re.Match, list[str]]]:
    """The functions of launch_unit_sass(unit, flags=flags) whose mangled name matches
    `name_pattern` (re.search), each with its match (whose groups name the template arguments)."""
    found = []
    for name, instrs in split_functions(launch_unit_sass(unit, tmp_path, flags)).items():
        m = re.search(name_pattern, name)
        if m:
            found.append((m, instrs))
    return found
