"""GPU tests: need an SM90 GPU and the CUDA kernels; skipped otherwise, with the reason."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch_fmha  # noqa: E402


def pytest_collection_modifyitems(config, items):
    reason = torch_fmha.sm90_unavailable_reason()
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
            # A hung kernel must fail the test, not the session.
            item.add_marker(pytest.mark.timeout(300, method="thread"))
