// CUDA runtime calls for the measuring tools (see cuda_tools.h).
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

extern "C" {
#include "cuda_tools.h"
}

extern "C" int cuda_profiler_start(void) { return cudaProfilerStart() == cudaSuccess ? 0 : -1; }

extern "C" int cuda_profiler_stop(void) { return cudaProfilerStop() == cudaSuccess ? 0 : -1; }

extern "C" int cuda_device_pci_bus_id(int index, char *buf, size_t len) {
    if (len < 13 || len > (size_t)1 << 20) return -1; // "dddd:bb:dd.f" and its NUL
    return cudaDeviceGetPCIBusId(buf, (int)len, index) == cudaSuccess ? 0 : -1;
}
