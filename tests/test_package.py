"""The package's command-line entry points and its build cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import torch

import torch_fmha


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900,
                          env=env or os.environ.copy())


def test_second_import_compiles_nothing():
    res = _run("-c", "import torch_fmha; print('SECONDS', torch_fmha.build_info.seconds)")
    assert res.returncode == 0, res.stderr
    assert "SECONDS 0.0" in res.stdout
    assert "compiling" not in res.stderr


def test_numpy_is_a_dependency_and_import_does_not_warn():
    """`import torch` warns "Failed to initialize NumPy" when numpy is missing (the torch
    wheels do not require it), so the package declares it (pyproject.toml)."""
    from importlib.metadata import requires
    assert "numpy" in [r.split(";")[0].strip() for r in requires("torch_fmha") or []]
    res = _run("-c", "import torch_fmha")
    assert res.returncode == 0, res.stderr
    assert "NumPy" not in res.stderr, res.stderr


def test_build_cli():
    res = _run("-m", "torch_fmha.build")
    assert res.returncode == 0, res.stderr
    assert "CPU ops : built" in res.stdout
    expected = "built (sm_90a kernels)" if torch_fmha.build_info.cuda else "not built: "
    assert expected in res.stdout


def test_main_cli_on_this_machine():
    res = _run("-m", "torch_fmha")
    if torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0):
        return  # the benchmark path: exercised on the GPU machine, not in the unit tests
    assert res.returncode == 0, res.stdout + res.stderr
    assert "needs an NVIDIA SM90 (Hopper) GPU" in res.stdout
    assert "rel err" in res.stdout


def test_bench_cli_without_gpu():
    if torch.cuda.is_available():
        return
    res = _run("-m", "torch_fmha.bench", "--head-dims", "128")
    assert res.returncode == 2
    assert "SM90" in (res.stdout + res.stderr)
    assert "Traceback" not in res.stderr


def test_quantize_roundtrip_shapes():
    x = torch.randn(2, 16, 8, 64)
    x8, d = torch_fmha.quantize_fp8(x, "head", group_size=4)
    assert x8.dtype == torch.float8_e4m3fn and d.shape == (2, 2)
    back = x8.float() * d.repeat_interleave(4, 1)[:, None, :, None]
    assert ((back - x).abs() <= x.abs() * 0.07 + d.max() * 0.01).all()
    x8, d = torch_fmha.quantize_fp8(x)
    assert d.shape == (1,) and x8.float().abs().max() == 448
    packed = torch.randn(10, 4, 64)
    cu = torch.tensor([0, 3, 3, 10], dtype=torch.int32)
    p8, pd = torch_fmha.quantize_fp8(packed, "head", cu_seqlens=cu)
    assert pd.shape == (3, 4)
    assert torch.equal(pd[1], torch.full((4,), torch.finfo(torch.float32).tiny / 448))  # empty sequence
    torch.testing.assert_close(pd[0], packed[:3].abs().amax(dim=(0, 2)) / 448)


def test_package_data_ships_every_native_source():
    """A non-editable install must carry every file the first-import build reads."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = cfg["package-data"]["torch_fmha.csrc"]
    csrc = root / "csrc"
    native = [p.relative_to(csrc).as_posix() for p in csrc.rglob("*")
              if p.suffix in (".h", ".cuh", ".cu", ".cpp")]

    def shipped(f, pat):  # setuptools globs: '*' does not cross '/'
        fs, ps = f.split("/"), pat.split("/")
        return len(fs) == len(ps) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(fs, ps))

    missing = [f for f in native if not any(shipped(f, pat) for pat in patterns)]
    assert native and not missing, f"not shipped in the wheel: {missing}"
    assert "torch_fmha.integrations" in cfg["packages"]


def test_library_links_the_shared_libstdcxx():
    """The native library takes libstdc++ from the shared library, as torch does, and carries
    no copy of its stream code (issue 13: on the GPU machine a plain link put a static copy of
    `std::ostream::_M_insert<long>` into the library, and every check message that printed
    an integer crashed the process; `_build.shared_libstdcxx_flags`)."""
    lib = str(torch_fmha.build_info.library)
    dynamic = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True)
    assert dynamic.returncode == 0, dynamic.stderr
    copied = [line for line in dynamic.stdout.splitlines()
              if line.endswith(("_ZNSo9_M_insertIlEERSoT_", "_ZNSt6locale7classicEv"))]
    assert copied == [], f"{lib} defines libstdc++'s own symbols: {copied}"
    needed = subprocess.run(["objdump", "-p", lib], capture_output=True, text=True)
    assert needed.returncode == 0, needed.stderr
    assert re.search(r"NEEDED\s+libstdc\+\+\.so\.6", needed.stdout), needed.stdout


def test_check_error_printing_integers_raises_in_a_fresh_process():
    """A check message with integers in it (k / v shapes) raises a RuntimeError; run in its own
    process, since the issue-13 failure mode was a SIGSEGV that would end the test run."""
    code = ("import torch, torch_fmha\n"
            "q = torch.zeros(1, 48, 2, 64)\n"
            "try:\n"
            "    torch_fmha.attention(q, q, torch.zeros(1, 40, 2, 64))\n"
            "except RuntimeError as e:\n"
            "    print('RAISED', e)\n")
    res = _run("-c", code)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    assert "RAISED torch_fmha.fwd: k and v must have the same shape, got k [1, 48, 2, 64] and v " \
           "[1, 40, 2, 64]" in res.stdout, res.stdout
