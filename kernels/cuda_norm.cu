// Embedding gather and RMS norm (with the fused residual add) for ops_cuda.
//
// Both ops are memory-bound row copies: the only goal is to move each byte once, with
// 16-byte loads and stores where the shape and pointers allow, and a scalar path for
// everything else (any D, any alignment, any weight DType).
//
// embedding  out[t, :] = table[tokens[t], :]                                out bf16 [T, D]
//   grid.x = token, grid.y strides over the row. Fast path: bf16 table, D % 8 == 0, table
//   and out 16-byte aligned: one uint4 (8 bf16) per thread, a plain copy. Otherwise each
//   thread converts one element with cuda_load_weight (bf16, f16 or f32 tables). Token ids
//   live in device memory and cannot be checked on the host: an id outside [0, vocab)
//   writes a zero row and never reads the table.
//
// rmsnorm    h = x (+ residual);  residual = bf16(h);  out = bf16(w * (h * inv_rms(h)))
//   The norm is computed from the f32 sum h, not from the bf16 value stored back into the
//   residual: that is what ops_ref does (f32 everywhere), so only the final roundings of
//   out and residual differ from it. A group of threads owns one row: a warp for D <= 1024
//   (eight rows per 256-thread block), a whole block for larger D. Fast path (D % 8 == 0,
//   x / residual / out 16-byte aligned): each thread keeps its CHUNKS x 8 values of h in
//   registers between the sum of squares and the scaling, so x and residual are read once.
//   Generic path (any D or alignment): two passes, the second recomputes h from x and the
//   residual, which are not written before it (identical f32 adds give identical h).
//   out may alias x: every element is read and written by the same thread, reads first.
#include <math.h>
#include <stdint.h>

#include "cuda_internal.cuh"

namespace {

constexpr int kEmbedThreads = 256;
constexpr unsigned kMaxGridY = 65535;

// ---- embedding ----------------------------------------------------------------------------

// table/out as uint4 rows of `chunks` 16-byte chunks (8 bf16 each).
__global__ void __launch_bounds__(kEmbedThreads)
embedding_bf16_vec_kernel(const int32_t *__restrict__ tokens, const uint4 *__restrict__ table,
                          uint4 *__restrict__ out, int chunks, int vocab) {
    const size_t t = blockIdx.x;
    const int32_t id = tokens[t];
    const bool valid = id >= 0 && id < vocab;
    const uint4 *src = table + (valid ? (size_t)id * (size_t)chunks : 0);
    uint4 *dst = out + t * (size_t)chunks;
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < chunks; c += gridDim.y * blockDim.x)
        dst[c] = valid ? __ldg(src + c) : make_uint4(0u, 0u, 0u, 0u);
}

__global__ void __launch_bounds__(kEmbedThreads)
embedding_generic_kernel(const int32_t *__restrict__ tokens, const void *__restrict__ table,
                         DType table_dtype, __nv_bfloat16 *__restrict__ out, int dim, int vocab) {
    const size_t t = blockIdx.x;
    const int32_t id = tokens[t];
    const bool valid = id >= 0 && id < vocab;
    const size_t src_row = valid ? (size_t)id * (size_t)dim : 0;
    __nv_bfloat16 *dst = out + t * (size_t)dim;
    for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < dim; j += gridDim.y * blockDim.x) {
        float v = valid ? cuda_load_weight(table, table_dtype, src_row + (size_t)j) : 0.0f;
        dst[j] = __float2bfloat16_rn(v);
    }
}

// ---- rmsnorm ------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Sum of v over the row's thread group: one warp, or the whole block (blockDim.x threads,
// a multiple of 32). Every thread of the group must call it; partials holds 32 floats.
template <bool WARP_PER_ROW>
__device__ __forceinline__ float row_sum(float v, float *partials) {
    v = warp_sum(v);
    if (WARP_PER_ROW) return v;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    if (lane == 0) partials[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < n_warps; w++) total += partials[w]; // same order in every thread
    return total;
}

struct RmsRow {
    const __nv_bfloat16 *x;
    __nv_bfloat16 *residual; // or NULL
    __nv_bfloat16 *out;
    int lane, group; // this thread's index in the row's group, and the group's size
};

// Which row this thread group owns, or false when past the last row (uniform per group).
template <bool WARP_PER_ROW>
__device__ __forceinline__ bool rms_row(const __nv_bfloat16 *x, __nv_bfloat16 *residual,
                                        __nv_bfloat16 *out, int n_rows, int dim, RmsRow *r) {
    const size_t row = WARP_PER_ROW ? (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)
                                    : (size_t)blockIdx.x;
    if (row >= (size_t)n_rows) return false;
    const size_t base = row * (size_t)dim;
    r->x = x + base;
    r->residual = residual ? residual + base : nullptr;
    r->out = out + base;
    r->lane = WARP_PER_ROW ? (threadIdx.x & 31) : threadIdx.x;
    r->group = WARP_PER_ROW ? 32 : blockDim.x;
    return true;
}

// bf16 pairs as u32 words (element 2k in the low half): exact shifts, no type punning.
__device__ __forceinline__ void bf16x8_to_f32(uint4 v, float f[8]) {
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(words[k] << 16);
        f[2 * k + 1] = __uint_as_float(words[k] & 0xffff0000u);
    }
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

__device__ __forceinline__ uint4 f32x8_to_bf16(const float f[8]) {
    return make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                      pack_bf16x2(f[6], f[7]));
}

// Weight elements j0 .. j0+7: one 16-byte load for an aligned bf16 weight, else 8 scalars.
__device__ __forceinline__ void load_weight8(const void *w, DType t, bool w_vec, size_t j0,
                                             float f[8]) {
    if (w_vec) {
        bf16x8_to_f32(__ldg(reinterpret_cast<const uint4 *>(w) + j0 / 8), f);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) f[k] = cuda_load_weight(w, t, j0 + k);
    }
}

// Fast path: D % 8 == 0 and x / residual / out 16-byte aligned; the row has D / 8 chunks,
// and each thread of the group keeps CHUNKS of them (8 floats each) in registers.
// w_vec: the weight is bf16 and 16-byte aligned.
template <bool WARP_PER_ROW, int CHUNKS>
__global__ void __launch_bounds__(1024)
rmsnorm_vec_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *residual, const void *__restrict__ weight,
                   DType weight_dtype, bool w_vec, __nv_bfloat16 *out, int n_rows, int dim,
                   float eps) {
    __shared__ float partials[32];
    RmsRow r;
    if (!rms_row<WARP_PER_ROW>(x, residual, out, n_rows, dim, &r)) return;
    const int chunks = dim / 8;

    float h[CHUNKS][8];
    float ss = 0.0f;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int chunk = r.lane + c * r.group;
        if (chunk < chunks) {
            bf16x8_to_f32(reinterpret_cast<const uint4 *>(r.x)[chunk], h[c]);
            if (r.residual) {
                float res[8];
                bf16x8_to_f32(reinterpret_cast<const uint4 *>(r.residual)[chunk], res);
#pragma unroll
                for (int k = 0; k < 8; k++) h[c][k] += res[k];
            }
#pragma unroll
            for (int k = 0; k < 8; k++) ss += h[c][k] * h[c][k];
        }
    }
    ss = row_sum<WARP_PER_ROW>(ss, partials);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps); // as ops_ref: 1 / sqrt, not rsqrt

#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int chunk = r.lane + c * r.group;
        if (chunk < chunks) {
            if (r.residual) reinterpret_cast<uint4 *>(r.residual)[chunk] = f32x8_to_bf16(h[c]);
            float w[8], o[8];
            load_weight8(weight, weight_dtype, w_vec, (size_t)chunk * 8, w);
#pragma unroll
            for (int k = 0; k < 8; k++) o[k] = w[k] * (h[c][k] * inv);
            reinterpret_cast<uint4 *>(r.out)[chunk] = f32x8_to_bf16(o);
        }
    }
}

// Generic path: any D, any alignment. Pass 1 sums h^2 without writing; pass 2 recomputes h
// and writes residual and out. Each element belongs to one thread in both passes.
template <bool WARP_PER_ROW>
__global__ void __launch_bounds__(256)
rmsnorm_generic_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *residual,
                       const void *__restrict__ weight, DType weight_dtype, __nv_bfloat16 *out,
                       int n_rows, int dim, float eps) {
    __shared__ float partials[32];
    RmsRow r;
    if (!rms_row<WARP_PER_ROW>(x, residual, out, n_rows, dim, &r)) return;

    float ss = 0.0f;
    for (int j = r.lane; j < dim; j += r.group) {
        float h = __bfloat162float(r.x[j]);
        if (r.residual) h += __bfloat162float(r.residual[j]);
        ss += h * h;
    }
    ss = row_sum<WARP_PER_ROW>(ss, partials);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);

    for (int j = r.lane; j < dim; j += r.group) {
        float h = __bfloat162float(r.x[j]);
        if (r.residual) {
            h += __bfloat162float(r.residual[j]);
            r.residual[j] = __float2bfloat16_rn(h);
        }
        r.out[j] = __float2bfloat16_rn(cuda_load_weight(weight, weight_dtype, (size_t)j) * (h * inv));
    }
}

bool host_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

bool dtype_ok(DType t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

template <bool WARP_PER_ROW, int CHUNKS>
void launch_rmsnorm_vec(const RmsNormParams *p, CudaQueue *q, unsigned blocks, unsigned threads,
                        bool w_vec) {
    rmsnorm_vec_kernel<WARP_PER_ROW, CHUNKS><<<blocks, threads, 0, q->stream>>>(
        (const __nv_bfloat16 *)p->x, (__nv_bfloat16 *)p->residual, p->weight, p->weight_dtype,
        w_vec, (__nv_bfloat16 *)p->out, p->n_rows, p->dim, p->eps);
}

// Picks CHUNKS = ceil(row chunks / group size) in 1..4 (the caller guarantees the range).
template <bool WARP_PER_ROW>
void dispatch_rmsnorm_vec(const RmsNormParams *p, CudaQueue *q, unsigned blocks, unsigned threads,
                          int chunks_per_thread, bool w_vec) {
    switch (chunks_per_thread) {
    case 1: launch_rmsnorm_vec<WARP_PER_ROW, 1>(p, q, blocks, threads, w_vec); break;
    case 2: launch_rmsnorm_vec<WARP_PER_ROW, 2>(p, q, blocks, threads, w_vec); break;
    case 3: launch_rmsnorm_vec<WARP_PER_ROW, 3>(p, q, blocks, threads, w_vec); break;
    default: launch_rmsnorm_vec<WARP_PER_ROW, 4>(p, q, blocks, threads, w_vec); break;
    }
}

} // namespace

int cuda_embedding(const EmbeddingParams *p, CudaQueue *q) {
    if (!p || !q || !p->tokens || !p->table || !p->out || !dtype_ok(p->table_dtype))
        return OPS_ERR_ARG;
    if (p->n_tokens < 0 || p->dim < 1 || p->vocab < 1) return OPS_ERR_ARG;
    if (p->n_tokens == 0) return OPS_OK;

    const bool vec = p->table_dtype == DT_BF16 && p->dim % 8 == 0 && host_aligned16(p->table) &&
                     host_aligned16(p->out);
    const int per_row = vec ? p->dim / 8 : p->dim;
    const unsigned row_blocks = cuda_blocks((size_t)per_row, kEmbedThreads);
    const dim3 grid((unsigned)p->n_tokens, row_blocks < kMaxGridY ? row_blocks : kMaxGridY);
    if (vec)
        embedding_bf16_vec_kernel<<<grid, kEmbedThreads, 0, q->stream>>>(
            p->tokens, (const uint4 *)p->table, (uint4 *)p->out, per_row, p->vocab);
    else
        embedding_generic_kernel<<<grid, kEmbedThreads, 0, q->stream>>>(
            p->tokens, p->table, p->table_dtype, (__nv_bfloat16 *)p->out, p->dim, p->vocab);
    return cuda_launch_status();
}

int cuda_rmsnorm(const RmsNormParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->weight || !p->out || !dtype_ok(p->weight_dtype)) return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->dim < 1 || !(p->eps >= 0.0f) || isinf(p->eps)) return OPS_ERR_ARG;
    if (p->n_rows == 0) return OPS_OK;

    const int dim = p->dim;
    const bool vec = dim % 8 == 0 && host_aligned16(p->x) && host_aligned16(p->out) &&
                     (!p->residual || host_aligned16(p->residual));
    const bool w_vec = p->weight_dtype == DT_BF16 && host_aligned16(p->weight);
    const size_t rows = (size_t)p->n_rows;
    const unsigned warp_blocks = cuda_blocks(rows, 8); // 8 warps (rows) per 256-thread block

    if (vec) {
        const int chunks = dim / 8;
        if (chunks <= 128) {                 // D <= 1024: a warp per row, <= 4 chunks each
            dispatch_rmsnorm_vec<true>(p, q, warp_blocks, 256, (chunks + 31) / 32, w_vec);
            return cuda_launch_status();
        }
        if (chunks <= 4096) {                // D <= 32768: a block per row, <= 4 chunks each
            const unsigned threads = chunks <= 1024 ? 256 : 1024;
            dispatch_rmsnorm_vec<false>(p, q, (unsigned)rows, threads,
                                        (int)((chunks + threads - 1) / threads), w_vec);
            return cuda_launch_status();
        }
    }
    if (dim <= 1024)
        rmsnorm_generic_kernel<true><<<warp_blocks, 256, 0, q->stream>>>(
            (const __nv_bfloat16 *)p->x, (__nv_bfloat16 *)p->residual, p->weight, p->weight_dtype,
            (__nv_bfloat16 *)p->out, p->n_rows, dim, p->eps);
    else
        rmsnorm_generic_kernel<false><<<(unsigned)rows, 256, 0, q->stream>>>(
            (const __nv_bfloat16 *)p->x, (__nv_bfloat16 *)p->residual, p->weight, p->weight_dtype,
            (__nv_bfloat16 *)p->out, p->n_rows, dim, p->eps);
    return cuda_launch_status();
}
