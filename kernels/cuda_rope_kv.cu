// Rotary embedding fused with the paged K/V cache write, for ops_cuda.
//
// One block per token reads its fused QKV row [(Hq + 2*Hkv) * Dh] once and writes
//   q heads, rotated        -> q_out[t, h, :]                       [T, Hq, Dh]
//   k heads, rotated        -> k_cache[slot, h, :]                  [num_blocks * block_size, Hkv, Dh]
//   v heads, as they are    -> v_cache[slot, h, :]
// with slot = slot_mapping[t]: a slot < 0 or >= num_blocks * block_size writes no K/V (the
// q heads are still written). A negative position (device memory, unchecked) counts as 0.
//
// Rotation ("rotate half", Llama): for pair i in [0, Dh/2) with angle = f32(pos * inv_freq[i]),
//   x'[i] = x[i] cos - x[i + Dh/2] sin,    x'[i + Dh/2] = x[i + Dh/2] cos + x[i] sin,
// in f32 with each product rounded before the add, as the C reference evaluates it.
// cos/sin: the block first fills a shared [Dh/2] table, each entry once per token rather
// than once per head. They are evaluated in double and rounded to f32: positions reach
// 100K+, where the fast intrinsics are useless, and double-then-round is what the C
// library's correctly rounded cosf/sinf give, so the GPU and ops_ref share the same table
// nearly always (at most Dh/2 double sincos per token: negligible next to the row's bytes).
//
// Work units after the table: a unit is P consecutive pairs of one rotated head, or one
// chunk of the V row. Fast path P = 8 (Dh % 16 == 0 and all four tensors 16-byte aligned):
// 16-byte loads of x[i0 .. i0+7] and x[i0+Dh/2 .. i0+Dh/2+7], 16-byte stores, and the V
// heads copied as 16-byte chunks. Generic path P = 1 (any even Dh, any alignment).
#include <stdint.h>

#include "cuda_internal.cuh"

namespace {

constexpr int kMaxThreads = 256;

template <int P> struct Pairs; // P bf16 as one register-sized value

template <> struct Pairs<8> { // as four u32 words, element 2k in the low half of word k
    uint32_t w[4];
    __device__ __forceinline__ void load(const __nv_bfloat16 *p) {
        const uint4 v = *reinterpret_cast<const uint4 *>(p);
        w[0] = v.x;
        w[1] = v.y;
        w[2] = v.z;
        w[3] = v.w;
    }
    __device__ __forceinline__ void store(__nv_bfloat16 *p) const {
        *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    }
    __device__ __forceinline__ float get(int k) const {
        return __uint_as_float(k % 2 ? w[k / 2] & 0xffff0000u : w[k / 2] << 16);
    }
    __device__ __forceinline__ void set(int k, float f) {
        const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(f));
        w[k / 2] = k % 2 ? (w[k / 2] & 0x0000ffffu) | (h << 16) : (w[k / 2] & 0xffff0000u) | h;
    }
};

template <> struct Pairs<1> {
    __nv_bfloat16 v;
    __device__ __forceinline__ void load(const __nv_bfloat16 *p) { v = *p; }
    __device__ __forceinline__ void store(__nv_bfloat16 *p) const { *p = v; }
    __device__ __forceinline__ float get(int) const { return __bfloat162float(v); }
    __device__ __forceinline__ void set(int, float f) { v = __float2bfloat16_rn(f); }
};

// Rotates pairs i0 .. i0+P-1 of one head: src and dst point at the head's first element.
template <int P>
__device__ __forceinline__ void rotate_pairs(const __nv_bfloat16 *src, __nv_bfloat16 *dst, int i0,
                                             int half, const float2 *cos_sin) {
    Pairs<P> lo, hi;
    lo.load(src + i0);
    hi.load(src + i0 + half);
#pragma unroll
    for (int k = 0; k < P; k++) {
        const float2 cs = cos_sin[i0 + k];
        const float x0 = lo.get(k), x1 = hi.get(k);
        // __fmul_rn: no FMA contraction, so the result matches the C expression's roundings
        lo.set(k, __fsub_rn(__fmul_rn(x0, cs.x), __fmul_rn(x1, cs.y)));
        hi.set(k, __fadd_rn(__fmul_rn(x1, cs.x), __fmul_rn(x0, cs.y)));
    }
    lo.store(dst + i0);
    hi.store(dst + i0 + half);
}

// Dynamic shared memory: Dh/2 float2 (cos, sin).
template <int P>
__global__ void __launch_bounds__(kMaxThreads)
rope_kv_write_kernel(const __nv_bfloat16 *qkv, __nv_bfloat16 *q_out,
                     __nv_bfloat16 *__restrict__ k_cache, __nv_bfloat16 *__restrict__ v_cache,
                     const int32_t *__restrict__ positions, const int64_t *__restrict__ slot_mapping,
                     const float *__restrict__ inv_freq, int n_q_heads, int n_kv_heads,
                     int head_dim, int64_t n_slots) {
    extern __shared__ float2 cos_sin[];
    const size_t t = blockIdx.x;
    const int half = head_dim / 2;
    const int32_t pos = max(positions[t], 0);
    const int64_t slot = slot_mapping[t];
    const bool write_kv = slot >= 0 && slot < n_slots;

    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float angle = __fmul_rn((float)pos, inv_freq[i]); // rounded to f32, as PyTorch does
        double s, c;
        sincos((double)angle, &s, &c);
        cos_sin[i] = make_float2((float)c, (float)s);
    }
    __syncthreads();

    const size_t row_elems = (size_t)(n_q_heads + 2 * n_kv_heads) * (size_t)head_dim;
    const size_t kv_row = (size_t)n_kv_heads * (size_t)head_dim;
    const __nv_bfloat16 *src_row = qkv + t * row_elems;
    __nv_bfloat16 *q_row = q_out + t * (size_t)n_q_heads * (size_t)head_dim;
    __nv_bfloat16 *k_row = write_kv ? k_cache + (size_t)slot * kv_row : nullptr;

    // q heads, then (when the slot is valid) k heads: head h of the qkv row.
    const int units_per_head = half / P;
    const int rot_units = (n_q_heads + (write_kv ? n_kv_heads : 0)) * units_per_head;
    for (int u = threadIdx.x; u < rot_units; u += blockDim.x) {
        const int h = u / units_per_head;
        const int i0 = (u - h * units_per_head) * P;
        __nv_bfloat16 *dst = h < n_q_heads ? q_row + (size_t)h * head_dim
                                           : k_row + (size_t)(h - n_q_heads) * head_dim;
        rotate_pairs<P>(src_row + (size_t)h * head_dim, dst, i0, half, cos_sin);
    }

    if (write_kv) {
        const __nv_bfloat16 *v_src = src_row + (size_t)(n_q_heads + n_kv_heads) * head_dim;
        __nv_bfloat16 *v_dst = v_cache + (size_t)slot * kv_row;
        if (P == 8) { // kv_row % 16 == 0 and both rows 16-byte aligned on this path
            const uint4 *s4 = reinterpret_cast<const uint4 *>(v_src);
            uint4 *d4 = reinterpret_cast<uint4 *>(v_dst);
            for (size_t c = threadIdx.x; c < kv_row / 8; c += blockDim.x) d4[c] = s4[c];
        } else {
            for (size_t j = threadIdx.x; j < kv_row; j += blockDim.x) v_dst[j] = v_src[j];
        }
    }
}

bool host_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

} // namespace

int cuda_rope_kv_write(const RopeKvWriteParams *p, CudaQueue *q) {
    if (!p || !q || !p->qkv || !p->q_out || !p->k_cache || !p->v_cache || !p->positions ||
        !p->slot_mapping || !p->inv_freq)
        return OPS_ERR_ARG;
    if (p->n_tokens < 0 || p->n_q_heads < 1 || p->n_kv_heads < 1 || p->head_dim < 2 ||
        p->head_dim % 2 != 0 || p->block_size < 1 || p->num_blocks < 1)
        return OPS_ERR_ARG;
    if (p->n_tokens == 0) return OPS_OK;

    // Work-unit counts and head offsets are ints inside the kernel.
    const int64_t heads = (int64_t)p->n_q_heads + 2 * (int64_t)p->n_kv_heads;
    if (heads * p->head_dim > INT32_MAX) return OPS_ERR_UNSUPPORTED;
    const int half = p->head_dim / 2;
    const size_t table_bytes = (size_t)half * sizeof(float2);
    if (table_bytes > 48 * 1024) return OPS_ERR_UNSUPPORTED; // Dh > 12288: no such model

    const bool vec = half % 8 == 0 && host_aligned16(p->qkv) && host_aligned16(p->q_out) &&
                     host_aligned16(p->k_cache) && host_aligned16(p->v_cache);
    const int pairs = vec ? 8 : 1;
    const int64_t units = ((int64_t)p->n_q_heads + p->n_kv_heads) * (half / pairs) +
                          (int64_t)p->n_kv_heads * p->head_dim / pairs;
    const int threads = units >= kMaxThreads ? kMaxThreads : (int)((units + 31) / 32 * 32);
    const int64_t n_slots = (int64_t)p->num_blocks * p->block_size;

    const __nv_bfloat16 *qkv = (const __nv_bfloat16 *)p->qkv;
    __nv_bfloat16 *q_out = (__nv_bfloat16 *)p->q_out, *kc = (__nv_bfloat16 *)p->k_cache,
                  *vc = (__nv_bfloat16 *)p->v_cache;
    if (vec)
        rope_kv_write_kernel<8><<<(unsigned)p->n_tokens, threads, table_bytes, q->stream>>>(
            qkv, q_out, kc, vc, p->positions, p->slot_mapping, p->inv_freq, p->n_q_heads,
            p->n_kv_heads, p->head_dim, n_slots);
    else
        rope_kv_write_kernel<1><<<(unsigned)p->n_tokens, threads, table_bytes, q->stream>>>(
            qkv, q_out, kc, vc, p->positions, p->slot_mapping, p->inv_freq, p->n_q_heads,
            p->n_kv_heads, p->head_dim, n_slots);
    return cuda_launch_status();
}
