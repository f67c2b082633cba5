// SiLU-gated product for the MLP: out[t, i] = silu(gate[t, i]) * up[t, i], computed in f32
// exactly as ops_ref writes it, g / (1 + expf(-g)) * u (expf and an IEEE divide, not the
// fast intrinsics), then rounded to bf16.
//
// gate and up rows are in_stride elements apart, so the fused [T, 2I] gate|up projection is
// passed as gate = buf, up = buf + I, in_stride = 2I; out is dense [T, I].
//
// Element-wise and memory-bound: grid.y strides over rows, grid.x * blockDim.x threads
// stride over one row. Fast path (I % 8 == 0, in_stride % 8 == 0, all three pointers
// 16-byte aligned): each thread moves 8 bf16 per load and store. Otherwise one element per
// thread. out may alias gate or up when in_stride == I: each element is read and written
// by the same thread, reads first.
#include <stdint.h>

#include "cuda_internal.cuh"

namespace {

constexpr int kSiluThreads = 128; // small blocks: a decode row (I ~ 14-28K) still fills 14-28 SMs
constexpr unsigned kMaxGridY = 65535;

__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// Exact bf16 <-> f32 on packed pairs by shifts (no type punning between uint4 and bf16).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

__global__ void __launch_bounds__(kSiluThreads)
silu_mul_vec_kernel(const uint4 *gate, const uint4 *up, uint4 *out, int n_rows, int chunks,
                    int stride_chunks) {
    for (size_t row = blockIdx.y; row < (size_t)n_rows; row += gridDim.y) {
        const uint4 *g_row = gate + row * (size_t)stride_chunks;
        const uint4 *u_row = up + row * (size_t)stride_chunks;
        uint4 *o_row = out + row * (size_t)chunks;
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
            const uint4 gv = g_row[c], uv = u_row[c];
            const uint32_t g2[4] = {gv.x, gv.y, gv.z, gv.w}, u2[4] = {uv.x, uv.y, uv.z, uv.w};
            uint32_t o2[4];
#pragma unroll
            for (int k = 0; k < 4; k++) { // two bf16 per u32 word, element 2k in the low half
                o2[k] = pack_bf16x2(silu_mul1(bf16_lo(g2[k]), bf16_lo(u2[k])),
                                    silu_mul1(bf16_hi(g2[k]), bf16_hi(u2[k])));
            }
            const uint4 ov = make_uint4(o2[0], o2[1], o2[2], o2[3]);
            o_row[c] = ov;
        }
    }
}

__global__ void __launch_bounds__(kSiluThreads)
silu_mul_generic_kernel(const __nv_bfloat16 *gate, const __nv_bfloat16 *up, __nv_bfloat16 *out,
                        int n_rows, int dim, int in_stride) {
    for (size_t row = blockIdx.y; row < (size_t)n_rows; row += gridDim.y) {
        const __nv_bfloat16 *g_row = gate + row * (size_t)in_stride;
        const __nv_bfloat16 *u_row = up + row * (size_t)in_stride;
        __nv_bfloat16 *o_row = out + row * (size_t)dim;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < dim; j += gridDim.x * blockDim.x)
            o_row[j] = __float2bfloat16_rn(
                silu_mul1(__bfloat162float(g_row[j]), __bfloat162float(u_row[j])));
    }
}

bool host_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

} // namespace

int cuda_silu_mul(const SiluMulParams *p, CudaQueue *q) {
    if (!p || !q || !p->gate || !p->up || !p->out) return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->dim < 1 || p->in_stride < p->dim) return OPS_ERR_ARG;
    if (p->n_rows == 0) return OPS_OK;

    const bool vec = p->dim % 8 == 0 && p->in_stride % 8 == 0 && host_aligned16(p->gate) &&
                     host_aligned16(p->up) && host_aligned16(p->out);
    const int per_row = vec ? p->dim / 8 : p->dim;
    const unsigned rows = (unsigned)p->n_rows;
    const dim3 grid(cuda_blocks((size_t)per_row, kSiluThreads), rows < kMaxGridY ? rows : kMaxGridY);
    if (vec)
        silu_mul_vec_kernel<<<grid, kSiluThreads, 0, q->stream>>>(
            (const uint4 *)p->gate, (const uint4 *)p->up, (uint4 *)p->out, p->n_rows, per_row,
            p->in_stride / 8);
    else
        silu_mul_generic_kernel<<<grid, kSiluThreads, 0, q->stream>>>(
            (const __nv_bfloat16 *)p->gate, (const __nv_bfloat16 *)p->up, (__nv_bfloat16 *)p->out,
            p->n_rows, p->dim, p->in_stride);
    return cuda_launch_status();
}
