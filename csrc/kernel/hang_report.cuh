// torch_fmha kernel: the hang report of the bounded-wait debug build (I5).
//
// A trap kills the CUDA context, and with it the device printf buffer: a
// printf just before __trap() is usually never seen. So the first thread
// whose wait runs out of budget also writes the report into host-mapped
// memory (zero-copy, survives the trap), where a host watcher thread
// (csrc/launch/hang_watch.cu) prints it, then waits a grace period for the
// watcher before trapping.
#pragma once

#include <cstdint>

namespace torch_fmha::kernel {

// Host-mapped; written once per process by the first timed-out waiter.
struct HangReport {
  int32_t written;  // 0 -> 1 after every field below is visible to the host
  int32_t block;
  int32_t thread;
  int32_t barrier;  // MbarId
  int32_t stage;
  int32_t tile;
  int32_t role;     // Role
  uint32_t phase;
};

}  // namespace torch_fmha::kernel
