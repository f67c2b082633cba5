// Shared by the GPU benchmarks (header-only: each benchmark is one program).
#ifndef MYRMEX_GPU_BENCH_H
#define MYRMEX_GPU_BENCH_H

#include <cuda_runtime.h>

// The memory ceiling measured in the run: bytes read + written per second (GB/s) of a
// 1 GiB device-to-device copy on `stream`, the best of 10 after 2 warm-up copies. 0 when it
// cannot be measured.
static inline double gpu_copy_bandwidth_gbs(cudaStream_t stream) {
    const size_t bytes = (size_t)1 << 30;
    void *src = NULL, *dst = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    double best = 0.0;
    if (cudaMalloc(&src, bytes) == cudaSuccess && cudaMalloc(&dst, bytes) == cudaSuccess &&
        cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess &&
        cudaMemsetAsync(src, 0x3c, bytes, stream) == cudaSuccess) {
        for (int r = 0; r < 12; r++) {
            float ms = 0.0f;
            cudaEventRecord(start, stream);
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
            cudaEventRecord(stop, stream);
            if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) break;
            double gbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
            if (r >= 2 && gbs > best) best = gbs;
        }
    }
    cudaGetLastError(); // a failed allocation is not sticky; leave no error behind
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cudaFree(src);
    cudaFree(dst);
    return best;
}

#endif
