// torch_fmha: host watcher of the debug build's hang report (hang_watch.h).
#include "hang_watch.h"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include <cuda_runtime.h>

#include "../kernel/pipeline.cuh"

namespace torch_fmha {

namespace {

void watch(const volatile kernel::HangReport* r) {
  while (r->written == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::fprintf(stderr,
               "torch_fmha hang: block %d thread %d, %s, waits on mbarrier %s stage %d phase %u "
               "tile %d (bounded-wait debug build; the kernel traps next)\n",
               r->block, r->thread, kernel::role_name(static_cast<kernel::Role>(r->role)),
               kernel::mbar_name(static_cast<kernel::MbarId>(r->barrier)), r->stage, r->phase, r->tile);
  std::fflush(stderr);
}

}  // namespace

kernel::HangReport* debug_hang_report() {
  static kernel::HangReport* report = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* host = nullptr;
    if (cudaHostAlloc(&host, sizeof(kernel::HangReport), cudaHostAllocMapped | cudaHostAllocPortable) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    *static_cast<kernel::HangReport*>(host) = {};
    void* dev = nullptr;
    if (cudaHostGetDevicePointer(&dev, host, 0) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    std::thread(watch, static_cast<const volatile kernel::HangReport*>(host)).detach();
    report = static_cast<kernel::HangReport*>(dev);
  });
  return report;
}

}  // namespace torch_fmha
