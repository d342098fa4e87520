"""GPU tests: need an SM90 GPU and the CUDA kernels; skipped otherwise, with the reason."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch_fmha  # noqa: E402


def _skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (the SM90 kernel tests need an H100/H200)"
    if torch.cuda.get_device_capability() != (9, 0):
        return f"{torch.cuda.get_device_name()} is not SM90 (the kernels are Hopper-only)"
    if not torch_fmha.build_info.cuda:
        return f"the CUDA kernels were not built: {torch_fmha.build_info.cuda_reason}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
            # A hung kernel must fail the test, not the session.
            item.add_marker(pytest.mark.timeout(300, method="thread"))
