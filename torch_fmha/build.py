"""``python -m torch_fmha.build``: prebuild the native ops and say what was built."""

from __future__ import annotations

import sys


def main() -> int:
    import torch_fmha  # builds (or loads from the cache) on import

    info = torch_fmha.build_info
    print(f"library : {info.library}")
    print(f"CPU ops : built")
    print(f"CUDA    : {'built (sm_90a kernels)' if info.cuda else 'not built: ' + info.cuda_reason}")
    print(f"debug   : {'TORCH_FMHA_DEBUG_HANG=1 (bounded barrier waits)' if info.debug_hang else 'off'}")
    print(f"compile : {info.seconds:.1f} s" if info.seconds else "compile : none (cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
