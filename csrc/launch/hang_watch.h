// torch_fmha: host side of the debug build's hang report (I5).
#pragma once

#include "../kernel/hang_report.cuh"

namespace torch_fmha {

// The process-wide host-mapped HangReport (device-visible pointer) for the
// kernels of a TORCH_FMHA_DEBUG_HANG=1 build. The first call allocates it and
// starts a watcher thread that prints the report to stderr as soon as a kernel
// writes it (the trap that follows kills the context and the device printf
// buffer with it). Returns nullptr if the allocation fails (the kernel then
// only printf's).
kernel::HangReport* debug_hang_report();

}  // namespace torch_fmha
