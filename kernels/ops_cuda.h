// ops_cuda: the CUDA backend (kernels/*.cu), callable from plain C. Present only in builds
// with the CUDA backend (MYRMEX_HAVE_CUDA).
//
// Activations and KV pages are bf16; weights must be bf16 (the runtime converts f32/f16
// checkpoints on load), except norm weights and embedding tables, which may be any DType.
#ifndef MYRMEX_OPS_CUDA_H
#define MYRMEX_OPS_CUDA_H

#include <stddef.h>

#include "kernels.h"

extern const Ops ops_cuda;

// Which GEMM kernels a queue uses. AUTO: skinny split-K for M <= 64, else wgmma + TMA on
// sm_90, mma.sync + cp.async elsewhere (each falling back to a generic kernel for shapes it
// does not tile). The others force one implementation for tests and A/B benchmarks.
typedef enum CudaGemmImpl {
    CUDA_GEMM_AUTO = 0,
    CUDA_GEMM_CUBLAS,
    CUDA_GEMM_SKINNY,
    CUDA_GEMM_MMA,
    CUDA_GEMM_WGMMA,
    CUDA_GEMM_IMPL_COUNT
} CudaGemmImpl;

const char *cuda_gemm_impl_name(CudaGemmImpl impl);
int ops_cuda_set_gemm(void *queue, CudaGemmImpl impl); // OPS_ERR_UNSUPPORTED: not on this GPU
// Loads libcublas (once; it is opened on first use, not linked): NULL on success, else why.
const char *ops_cuda_cublas_error(void);

// The cudaStream_t of a queue (benchmarks time it with CUDA events).
void *ops_cuda_stream(void *queue);

// Makes device `index` current for the calling thread (before any other call on it).
int ops_cuda_use_device(int index);
// Free and total device memory of the current device, in bytes.
int ops_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

#endif
