// ops_cuda's fill op: dummy weights generated on the device (no host copy, nothing read
// from disk), with the same hash as ops_ref so both backends make the same values.
#include "cuda_internal.cuh"

__global__ void fill_kernel(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = lo + (hi - lo) * sample_uniform(seed, i);
        if (dtype == DT_F32) ((float *)dst)[i] = v;
        else if (dtype == DT_BF16) ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v);
        else ((__half *)dst)[i] = __float2half_rn(v);
    }
}

int cuda_fill(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, CudaQueue *q) {
    if (!dst || !(dtype == DT_F32 || dtype == DT_BF16 || dtype == DT_F16) || !isfinite(lo) || !isfinite(hi) || lo > hi)
        return OPS_ERR_ARG;
    if (n == 0) return OPS_OK;
    unsigned blocks = cuda_blocks(n, 256);
    unsigned cap = (unsigned)q->num_sms * 8; // grid-stride: a few waves are enough
    fill_kernel<<<blocks < cap ? blocks : cap, 256, 0, q->stream>>>(dst, n, dtype, seed, lo, hi);
    return cuda_launch_status();
}
