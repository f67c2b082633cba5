// CUDA device discovery for the runtime (see cuda_device.h).
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "cuda_device.h"
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" / "no device" error
        return 0;
    }
    return n;
}

extern "C" int cuda_device_describe(int index, char *buf, size_t len) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    snprintf(buf, len, "%s (sm_%d%d, %zu MiB)", prop.name, prop.major, prop.minor,
             (size_t)(prop.totalGlobalMem >> 20));
    return 0;
}

// Stands for every kernel of the build: all are compiled for the same -gencode targets.
static __global__ void probe_kernel(void) {}

extern "C" int cuda_device_check(int index, char *why, size_t len) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, len, "cannot query CUDA device %d", index);
        return -1;
    }
    if (prop.major < 8) {
        snprintf(why, len, "%s is sm_%d%d; myrmex's CUDA kernels need sm_80 or newer (bf16 tensor cores): use --device cpu",
                 prop.name, prop.major, prop.minor);
        return -1;
    }
    return 0;
}

extern "C" int cuda_device_check_code(char *why, size_t len) {
    int dev = 0;
    cudaDeviceProp prop;
    cudaFuncAttributes attr;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, len, "cannot query the current CUDA device");
        return -1;
    }
    cudaError_t e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, len, "this build has no code for %s (sm_%d%d): %s; rebuild with -DMYRMEX_CUDA_ARCHS=%d%d",
                 prop.name, prop.major, prop.minor, cudaGetErrorString(e), prop.major, prop.minor);
        return -1;
    }
    return 0;
}
