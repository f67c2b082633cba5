// Decode attention: split-KV flash-decoding with the tensor-core tile kernel
// (cuda_attention.cuh) in its key-parallel configuration, and the merge of the splits.
//
// Used when a step's packed rows (max_q_len * GQA group) fit one 16-row tile: a decode step
// (one query per sequence) with up to 16 query heads per KV head. A CTA serves one KV head,
// all the query heads of its group (so each K/V byte is read from DRAM once per group, not
// once per query head) and one chunk of the context. Grid: (num_splits [* row tiles],
// Hkv, S); the chunk, ceil(visible keys / num_splits), is computed on the device per
// sequence, so a graph captured with a bucket's max_ctx_len stays valid for any ctx_len.
//
// Configuration per head dim (WM = 1: one 16-row tile; the WN warps split each BN-key tile
// into 16-key slices, keep their own softmax state, and merge through shared memory):
//
//   Dh         warps (WN)  BN  Q       shared memory   K+V bytes per stage
//   16..128    4           64  regs    12..68 KiB      64 * Dh * 4
//   256        2           32  shared  74 KiB          32 KiB
//
// Bandwidth: a decode step is a stream of K/V pages. Each CTA keeps one 32 KiB stage
// (Dh 128) in flight while it computes the other; at 3 resident CTAs/SM that is ~96 KiB in
// flight per SM, above the ~30 KiB per SM that 4.8 TB/s x ~0.8 us of loaded latency needs.
// Tensor-core work is 16 rows x keys whatever the group size, ~80 TFLOP/s at full bandwidth,
// far under the mma.sync ceiling, so GQA ratios 1..16 all stay memory-bound. The host picks
// num_splits (attn_num_splits) so (S * Hkv * splits) CTAs fill the GPU's resident slots.
//
// Splits write normalised f32 partials and their log2-sum-exp to q->scratch
// ([splits, T, Hq, Dh] then [splits, T, Hq]); attn_merge_kernel rescales and sums them:
//   out = sum_i 2^(lse_i - M) o_i / sum_i 2^(lse_i - M),  M = max_i lse_i.
#include "cuda_attention.cuh"

// One warp per (token, query head) row; 4 rows per 128-thread block.
constexpr int kMergeRowsPerBlock = 4;

__global__ void __launch_bounds__(32 * kMergeRowsPerBlock)
    attn_merge_kernel(const float *partial_o, const float *partial_lse, __nv_bfloat16 *out, int n_rows,
                      int head_dim, int num_splits) {
    __shared__ float weights[kMergeRowsPerBlock][kAttnMaxSplits];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long row = (long long)blockIdx.x * kMergeRowsPerBlock + warp;
    if (row >= n_rows) return;  // whole warp; no block-wide barrier below

    // Splits lane and lane + 32 (num_splits <= 64).
    const size_t split_stride = (size_t)n_rows;
    const float lse0 = lane < num_splits ? partial_lse[(size_t)lane * split_stride + row] : -INFINITY;
    const float lse1 = lane + 32 < num_splits ? partial_lse[(size_t)(lane + 32) * split_stride + row] : -INFINITY;
    float m = fmaxf(lse0, lse1);
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    const float base = m == -INFINITY ? 0.0f : m;
    const float w0 = exp2f(lse0 - base), w1 = exp2f(lse1 - base);
    float total = w0 + w1;
    for (int off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(0xffffffffu, total, off);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    weights[warp][lane] = w0 * inv;
    weights[warp][lane + 32] = w1 * inv;
    __syncwarp();

    // head_dim % 4 == 0 (the tile kernels' head dims): float4 in, 4 x bf16 out.
    const int quads = head_dim / 4;
    for (int c = lane; c < quads; c += 32) {
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int i = 0; i < num_splits; i++) {
            const float w = weights[warp][i];
            if (w == 0.0f) continue;  // an empty split: its partial may be all zeros
            const float4 v =
                *reinterpret_cast<const float4 *>(partial_o + ((size_t)i * split_stride + row) * head_dim + c * 4);
            acc.x += w * v.x;
            acc.y += w * v.y;
            acc.z += w * v.z;
            acc.w += w * v.w;
        }
        __nv_bfloat162 lo = __floats2bfloat162_rn(acc.x, acc.y), hi = __floats2bfloat162_rn(acc.z, acc.w);
        uint2 packed;
        packed.x = *reinterpret_cast<uint32_t *>(&lo);
        packed.y = *reinterpret_cast<uint32_t *>(&hi);
        *reinterpret_cast<uint2 *>(out + (size_t)row * head_dim + c * 4) = packed;
    }
}

int attn_merge_launch(const AttnArgs &a, CudaQueue *q) {
    if (a.num_splits < 2 || a.num_splits > kAttnMaxSplits || a.head_dim % 4 != 0 || !a.partial_o ||
        !a.partial_lse)
        return OPS_ERR_ARG;
    const int n_rows = a.n_tokens * a.n_q_heads;  // host checked: fits in int
    attn_merge_kernel<<<cuda_blocks((size_t)n_rows, kMergeRowsPerBlock), 32 * kMergeRowsPerBlock, 0, q->stream>>>(
        a.partial_o, a.partial_lse, a.out, n_rows, a.head_dim, a.num_splits);
    return cuda_launch_status();
}

int attn_decode_launch(AttnArgs a, const AttnPlan &plan, CudaQueue *q) {
    switch (a.head_dim) {
    case 16: return attn_run_tiled<16, 1, 4, 64, true, 3>(a, plan, q);
    case 32: return attn_run_tiled<32, 1, 4, 64, true, 3>(a, plan, q);
    case 64: return attn_run_tiled<64, 1, 4, 64, true, 3>(a, plan, q);
    case 96: return attn_run_tiled<96, 1, 4, 64, true, 3>(a, plan, q);
    case 128: return attn_run_tiled<128, 1, 4, 64, true, 3>(a, plan, q);
    case 256: return attn_run_tiled<256, 1, 2, 32, false, 3>(a, plan, q);
    default: return OPS_ERR_UNSUPPORTED;
    }
}
