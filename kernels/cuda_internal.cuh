// Private to ops_cuda: the queue, the launchers each kernel file exports to cuda_ops.cu,
// and small device helpers. Included only by kernels/*.cu.
#ifndef MYRMEX_CUDA_INTERNAL_CUH
#define MYRMEX_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "kernels.h"
#include "ops_cuda.h"
}

// What every op on one queue shares. scratch is device memory for split-K / split-KV
// partial results and cuBLAS's workspace; a launcher that needs more than scratch_bytes
// uses fewer splits. It holds nothing from one op to the next (ops on a queue run in order).
struct CudaQueue {
    cudaStream_t stream;
    cublasHandle_t cublas; // created on first use (cuda_gemm_cublas)
    void *scratch;
    size_t scratch_bytes;
    CudaGemmImpl gemm;
    int sm_major, sm_minor, num_sms;
    size_t smem_optin; // max dynamic shared memory per block, bytes
};

#define CUDA_SCRATCH_BYTES ((size_t)64 << 20)

// A launch's status: OPS_ERR_DEVICE when the launch (or an earlier async error) failed.
static inline int cuda_launch_status(void) {
    return cudaGetLastError() == cudaSuccess ? OPS_OK : OPS_ERR_DEVICE;
}

static inline unsigned cuda_blocks(size_t work, unsigned per_block) {
    return (unsigned)((work + per_block - 1) / per_block);
}

// Loads element i of a weight of any DType as f32 (norm weights, embedding tables).
__device__ __forceinline__ float cuda_load_weight(const void *w, DType t, size_t i) {
    if (t == DT_BF16) return __bfloat162float(((const __nv_bfloat16 *)w)[i]);
    if (t == DT_F16) return __half2float(((const __half *)w)[i]);
    return ((const float *)w)[i];
}

// ---- launchers (one op family per file) ---------------------------------------------------
// Each validates what it can see on the host (null pointers, sizes, dtypes) and returns an
// OpsStatus; it launches on q->stream and never synchronises.
int cuda_embedding(const EmbeddingParams *p, CudaQueue *q);      // cuda_norm.cu
int cuda_rmsnorm(const RmsNormParams *p, CudaQueue *q);          // cuda_norm.cu
int cuda_rope_kv_write(const RopeKvWriteParams *p, CudaQueue *q); // cuda_rope_kv.cu
int cuda_silu_mul(const SiluMulParams *p, CudaQueue *q);         // cuda_silu.cu
int cuda_sample(const SampleParams *p, CudaQueue *q);            // cuda_sample.cu
int cuda_fill(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, CudaQueue *q); // cuda_fill.cu
int cuda_sum(const SumParams *p, CudaQueue *q);                                                  // cuda_sum.cu
int cuda_copy_2d(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                 CudaQueue *q);                                                                   // cuda_sum.cu
int cuda_attention(const AttentionParams *p, CudaQueue *q);      // cuda_attention.cu: prefill / decode
int cuda_gemm_skinny(const GemmParams *p, CudaQueue *q);         // cuda_gemm_skinny.cu (any M; fast M <= 64)
int cuda_lm_head(const LmHeadParams *p, CudaQueue *q);           // cuda_gemm_skinny.cu
int cuda_gemm_mma(const GemmParams *p, CudaQueue *q);            // cuda_gemm_mma.cu (sm_80+)
int cuda_gemm_wgmma(const GemmParams *p, CudaQueue *q);          // cuda_gemm_wgmma.cu (sm_90a)
int cuda_gemm_cublas(const GemmParams *p, CudaQueue *q);         // cuda_gemm_cublas.cu
void cuda_cublas_destroy(CudaQueue *q);                          // cuda_gemm_cublas.cu: frees q->cublas
int cuda_cublas_handle(CudaQueue *q);                            // cuda_gemm_cublas.cu: makes q->cublas if missing

#endif
