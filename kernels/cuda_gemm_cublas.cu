// The cuBLAS baseline for gemm (`--gemm cublas`, and the reference the benchmarks and tests
// measure the hand-written kernels against): out[m, n] = sum_k x[m, k] * w[n, k], bf16 in and
// out, f32 accumulation (CUBLAS_COMPUTE_32F).
//
// cuBLAS is column-major. Our row-major out [M, N] is, read column-major, out^T [N, M] with
// leading dimension N, and out^T = w * x^T: w [N, K] row-major is w^T column-major (so op(A) =
// T, lda = K) and x [M, K] row-major is x^T column-major (op(B) = N, ldb = K).
//
// The handle is created on the queue's first cuBLAS GEMM, bound to the queue's stream, and
// given q->scratch as its workspace so that it never allocates on its own (which it must not
// do while a CUDA graph is being captured). Sharing scratch with the split-K / split-KV
// partials of other ops is safe because ops on one queue run one after another.
#include "cuda_internal.cuh"

static int cublas_status(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return OPS_OK;
    case CUBLAS_STATUS_INVALID_VALUE: return OPS_ERR_ARG;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH: return OPS_ERR_UNSUPPORTED;
    case CUBLAS_STATUS_ALLOC_FAILED: return OPS_ERR_NOMEM;
    default: return OPS_ERR_DEVICE;
    }
}

// Creates and configures q->cublas on first use; leaves it NULL on failure.
static int cublas_handle(CudaQueue *q) {
    if (q->cublas) return OPS_OK;
    cublasHandle_t h = NULL;
    int rc = cublas_status(cublasCreate(&h));
    if (rc != OPS_OK) return rc;
    rc = cublas_status(cublasSetStream(h, q->stream));
    if (rc == OPS_OK && q->scratch && q->scratch_bytes > 0)
        rc = cublas_status(cublasSetWorkspace(h, q->scratch, q->scratch_bytes));
    if (rc != OPS_OK) {
        cublasDestroy(h);
        return rc;
    }
    q->cublas = h;
    return OPS_OK;
}

int cuda_gemm_cublas(const GemmParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->w || !p->out) return OPS_ERR_ARG;
    if (p->w_dtype != DT_F32 && p->w_dtype != DT_F16 && p->w_dtype != DT_BF16) return OPS_ERR_ARG;
    if (p->w_dtype != DT_BF16) return OPS_ERR_UNSUPPORTED;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    if (p->m == 0) return OPS_OK;

    const int rc = cublas_handle(q);
    if (rc != OPS_OK) return rc;
    const float alpha = 1.0f, beta = 0.0f;
    // C (N x M, ldc N) = op(A) (N x K) * op(B) (K x M) with A = w seen as K x N (lda K),
    // op(A) = A^T, and B = x seen as K x M (ldb K).
    const cublasStatus_t s =
        cublasGemmEx(q->cublas, CUBLAS_OP_T, CUBLAS_OP_N, p->n, p->m, p->k, &alpha, p->w,
                     CUDA_R_16BF, p->k, p->x, CUDA_R_16BF, p->k, &beta, p->out, CUDA_R_16BF, p->n,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return cublas_status(s);
    return cuda_launch_status();
}

// Destroys the queue's cuBLAS handle, if one was created (called by queue_destroy).
void cuda_cublas_destroy(CudaQueue *q) {
    if (q && q->cublas) {
        cublasDestroy(q->cublas);
        q->cublas = NULL;
    }
}
