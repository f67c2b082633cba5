// Attention op (AttentionParams in kernels.h, reference in ops_ref_attention.c): argument
// checks, the choice of kernel, the KV split heuristic, and the generic fallback kernel.
//
// Dispatch (cuda_attention):
//   - head dim in {16, 32, 64, 96, 128, 256}, q/k/v/out 16-byte aligned, sm_80+:
//       max_q_len * group <= 16  -> attn_decode_launch  (split-KV, cuda_attention_decode.cu)
//       otherwise                -> attn_prefill_launch (row tiles, cuda_attention_prefill.cu)
//   - anything else (head dims such as 6, 8, 12, 80, unaligned pointers, a device without
//     room for the tile's shared memory) -> attn_generic_kernel below: plain f32 math,
//     correct for any head dim <= 256, not fast.
// MYRMEX_ATTENTION=generic|prefill|decode forces one path (decode's tile works for any row
// count; shapes a fast path cannot take still fall back to generic), and
// MYRMEX_ATTENTION_SPLITS=N forces N KV splits in the tile kernels; both for tests and A/B
// benchmarks, read once per process.
//
// Values in device memory (q_start, ctx_len, kv_indptr, kv_indices) are never read on the
// host: the grid is sized from max_q_len / max_ctx_len, and the kernels clamp row ranges
// to [0, T), skip CTAs past a sequence's rows, and zero-fill (tile kernels) or skip
// (generic) key rows whose page or block id is out of range.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_attention.cuh"

// ---- the generic kernel -------------------------------------------------------------------
// One 128-thread block per (token, query head). The block walks the visible keys in chunks
// of 128: thread i scores key j0 + i (its dot product with q over the head dim, f32), the
// block takes the chunk's max and sum for the online softmax, and then thread d
// accumulates output elements d and d + 128 over the chunk's keys (coalesced V reads).

constexpr int kGenericThreads = 128;
constexpr int kGenericMaxHeadDim = 2 * kGenericThreads;

__device__ __forceinline__ float attn_block_reduce(float v, float *slots, bool is_max) {
    for (int off = 16; off > 0; off >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, v, off);
        v = is_max ? fmaxf(v, other) : v + other;
    }
    if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = slots[0];
    for (int w = 1; w < kGenericThreads / 32; w++) r = is_max ? fmaxf(r, slots[w]) : r + slots[w];
    return r;
}

__global__ void __launch_bounds__(kGenericThreads) attn_generic_kernel(const AttnArgs a) {
    __shared__ float q_sh[kGenericMaxHeadDim];   // q * scale * log2(e)
    __shared__ float p_sh[kGenericThreads];      // this chunk's exp2(score - max)
    __shared__ long long off_sh[kGenericThreads]; // cache offset of each chunk key, -1: skip
    __shared__ float max_slots[kGenericThreads / 32], sum_slots[kGenericThreads / 32];

    const int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int Dh = a.head_dim, kvh = h / a.group;
    __nv_bfloat16 *dst = a.out + ((size_t)t * a.n_q_heads + h) * Dh;

    // The sequence owning token t: the last s with q_start[s] <= t (binary search; a
    // malformed q_start only makes the check below fail).
    int lo_s = 0, hi_s = a.n_seqs - 1;
    while (lo_s < hi_s) {
        const int mid = (lo_s + hi_s + 1) >> 1;
        if (a.q_start[mid] <= t) lo_s = mid;
        else hi_s = mid - 1;
    }
    const int seq = lo_s;
    int q_begin, q_end;
    attn_seq_rows(a, seq, &q_begin, &q_end);
    if (t < q_begin || t >= q_end) {  // token in no sequence: malformed input, write zeros
        for (int d = tid; d < Dh; d += kGenericThreads) dst[d] = __float2bfloat16_rn(0.0f);
        return;
    }
    const long long pos = (long long)max(a.ctx_len[seq], 0) - (q_end - q_begin) + (t - q_begin);
    const long long key_lo = a.window > 0 ? max(pos - a.window + 1, 0LL) : 0LL;
    int page_begin = a.kv_indptr[seq];
    int n_pages = a.kv_indptr[seq + 1] - page_begin;
    if (page_begin < 0 || n_pages < 0) page_begin = n_pages = 0;
    const int32_t *pages = a.kv_indices + page_begin;

    const __nv_bfloat16 *qv = a.q + ((size_t)t * a.n_q_heads + h) * Dh;
    for (int d = tid; d < Dh; d += kGenericThreads) q_sh[d] = __bfloat162float(qv[d]) * a.scale_log2;
    __syncthreads();

    float row_max = -INFINITY, row_sum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    for (long long j0 = key_lo; j0 <= pos; j0 += kGenericThreads) {
        const long long j = j0 + tid;
        float score = -INFINITY;
        long long off = -1;
        if (j <= pos) {
            off = attn_key_offset(a, pages, n_pages, kvh, (int)j);
            if (off >= 0) {
                const __nv_bfloat16 *kv = a.k_cache + off;
                float dot = 0.0f;
                for (int d = 0; d < Dh; d++) dot += q_sh[d] * __bfloat162float(kv[d]);
                score = dot;
            }
        }
        off_sh[tid] = off;
        const float chunk_max = attn_block_reduce(score, max_slots, true);
        const float new_max = fmaxf(row_max, chunk_max);
        const float base = new_max == -INFINITY ? 0.0f : new_max;
        const float alpha = exp2f(row_max - base);
        const float p = exp2f(score - base);
        p_sh[tid] = p;
        const float chunk_sum = attn_block_reduce(p, sum_slots, false);  // its barrier publishes p_sh
        row_sum = row_sum * alpha + chunk_sum;
        row_max = new_max;

        const int n = (int)min((long long)kGenericThreads, pos - j0 + 1);
        float a0 = acc0 * alpha, a1 = acc1 * alpha;
        const int d0 = tid, d1 = tid + kGenericThreads;
        for (int k = 0; k < n; k++) {
            const float pk = p_sh[k];
            const long long ok = off_sh[k];
            if (pk == 0.0f || ok < 0) continue;
            const __nv_bfloat16 *vv = a.v_cache + ok;
            if (d0 < Dh) a0 += pk * __bfloat162float(vv[d0]);
            if (d1 < Dh) a1 += pk * __bfloat162float(vv[d1]);
        }
        acc0 = a0;
        acc1 = a1;
        __syncthreads();  // p_sh, off_sh and the reduction slots are rewritten next chunk
    }
    const float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
    if (tid < Dh) dst[tid] = __float2bfloat16_rn(acc0 * inv);
    if (tid + kGenericThreads < Dh) dst[tid + kGenericThreads] = __float2bfloat16_rn(acc1 * inv);
}

// ---- KV split heuristic -------------------------------------------------------------------

int attn_num_splits(long long units, long long slots, int max_ctx_len, size_t split_bytes, const CudaQueue *q,
                    int forced) {
    int max_splits = max_ctx_len / kAttnMinSplitKeys;
    if (forced > 0) max_splits = forced;  // tests: even a short context may split
    if (max_splits > kAttnMaxSplits) max_splits = kAttnMaxSplits;
    if (split_bytes == 0 || !q->scratch) return 1;
    const size_t fit = q->scratch_bytes / split_bytes;
    if ((size_t)max_splits > fit) max_splits = (int)fit;
    if (max_splits < 2) return 1;
    if (forced > 0) return max_splits;
    if (units <= 0 || slots <= 0 || units >= 2 * slots) return 1;

    // Efficiency of s splits: the busy fraction of the slots over the waves they need.
    // Take the fewest splits within 85% of the best (each split costs a partial write).
    double eff[kAttnMaxSplits + 1] = {0.0};
    double best = 0.0;
    for (int s = 1; s <= max_splits; s++) {
        const long long ctas = units * s;
        const long long waves = (ctas + slots - 1) / slots;
        eff[s] = (double)ctas / (double)(waves * slots);
        if (eff[s] > best) best = eff[s];
    }
    for (int s = 1; s <= max_splits; s++)
        if (eff[s] >= 0.85 * best) return s;
    return 1;
}

// ---- dispatch -----------------------------------------------------------------------------

enum AttnForce { ATTN_AUTO = 0, ATTN_FORCE_GENERIC, ATTN_FORCE_PREFILL, ATTN_FORCE_DECODE };

struct AttnOverrides {
    AttnForce path;
    int splits;
};

static AttnOverrides attn_read_overrides() {
    AttnOverrides o = {ATTN_AUTO, 0};
    const char *path = getenv("MYRMEX_ATTENTION");
    if (path && strcmp(path, "generic") == 0) o.path = ATTN_FORCE_GENERIC;
    if (path && strcmp(path, "prefill") == 0) o.path = ATTN_FORCE_PREFILL;
    if (path && strcmp(path, "decode") == 0) o.path = ATTN_FORCE_DECODE;
    const char *splits = getenv("MYRMEX_ATTENTION_SPLITS");
    if (splits) {
        const long v = strtol(splits, nullptr, 10);
        o.splits = v > 0 && v <= kAttnMaxSplits ? (int)v : 0;
    }
    return o;
}

static bool attn_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

int cuda_attention(const AttentionParams *p, CudaQueue *q) {
    if (!p || !q || !p->q || !p->k_cache || !p->v_cache || !p->out || !p->q_start || !p->ctx_len ||
        !p->kv_indptr || !p->kv_indices)
        return OPS_ERR_ARG;
    if (p->n_seqs < 0 || p->n_tokens < 0 || p->n_q_heads < 1 || p->n_kv_heads < 1 ||
        p->n_q_heads % p->n_kv_heads != 0 || p->head_dim < 1 || p->block_size < 1 || p->num_blocks < 1 ||
        p->sliding_window < 0 || !isfinite(p->scale) || p->max_q_len < 0 || p->max_ctx_len < 0)
        return OPS_ERR_ARG;
    if (p->n_tokens == 0) return OPS_OK;
    if (p->n_seqs == 0 || p->max_q_len < 1) return OPS_ERR_ARG;  // tokens need a sequence and a bound
    if (p->head_dim > kGenericMaxHeadDim) return OPS_ERR_UNSUPPORTED;
    // Row and element counts stay in int inside the kernels; grid y/z limits.
    if ((long long)p->n_tokens * p->n_q_heads > 0x7fffffffLL || p->n_q_heads > 65535) return OPS_ERR_UNSUPPORTED;

    static const AttnOverrides overrides = attn_read_overrides();

    AttnArgs a;
    memset(&a, 0, sizeof a);
    a.q = (const __nv_bfloat16 *)p->q;
    a.k_cache = (const __nv_bfloat16 *)p->k_cache;
    a.v_cache = (const __nv_bfloat16 *)p->v_cache;
    a.out = (__nv_bfloat16 *)p->out;
    a.q_start = p->q_start;
    a.ctx_len = p->ctx_len;
    a.kv_indptr = p->kv_indptr;
    a.kv_indices = p->kv_indices;
    a.n_seqs = p->n_seqs;
    a.n_tokens = p->n_tokens;
    a.n_q_heads = p->n_q_heads;
    a.n_kv_heads = p->n_kv_heads;
    a.group = p->n_q_heads / p->n_kv_heads;
    a.head_dim = p->head_dim;
    a.block_size = p->block_size;
    a.num_blocks = p->num_blocks;
    a.window = p->sliding_window;
    a.scale_log2 = p->scale * 1.4426950408889634f;
    a.row_tiles = 1;
    a.num_splits = 1;

    AttnPlan plan;
    plan.max_q_len = p->max_q_len < p->n_tokens ? p->max_q_len : p->n_tokens;
    plan.max_ctx_len = p->max_ctx_len > plan.max_q_len ? p->max_ctx_len : plan.max_q_len;
    plan.forced_splits = overrides.splits;

    const bool fast = overrides.path != ATTN_FORCE_GENERIC && q->sm_major >= 8 && attn_aligned16(p->q) &&
                      attn_aligned16(p->k_cache) && attn_aligned16(p->v_cache) && attn_aligned16(p->out);
    if (fast) {
        const bool decode = overrides.path == ATTN_FORCE_DECODE ||
                            (overrides.path != ATTN_FORCE_PREFILL && (long long)plan.max_q_len * a.group <= 16);
        const int rc = decode ? attn_decode_launch(a, plan, q) : attn_prefill_launch(a, plan, q);
        if (rc != OPS_ERR_UNSUPPORTED) return rc;
    }

    const dim3 grid((unsigned)p->n_tokens, (unsigned)p->n_q_heads);
    attn_generic_kernel<<<grid, kGenericThreads, 0, q->stream>>>(a);
    return cuda_launch_status();
}
