// Private to the attention kernels (cuda_attention*.cu): the device-side argument block, the
// tensor-core tile kernel shared by the prefill and decode configurations, and the launchers
// the three files call in each other.
//
// ---- The tile kernel (attn_tile_kernel) --------------------------------------------------
// Flash attention forward (FA2-style) over the paged KV cache, bf16 in, fp32 softmax and
// accumulation, mma.sync.m16n8k16 on tensor cores (sm_80+).
//
// Rows. A CTA serves one KV head and all the query heads of its GQA group: the queries of a
// sequence are "packed" as rows r = i * G + h (query i of the sequence, head h of the
// group), so row r reads q[q_begin + r / G][kvh * G + r % G][:] and sits at position
// ctx_len - n_q + r / G. One K/V tile in shared memory then serves every head of the group:
// a decode step reads each K/V byte from DRAM once per group, and a short prefill chunk
// fills the 16-row mma tiles with heads instead of padding. For long prefills packing
// neither helps nor hurts (a 128-row tile consumes the same key tiles either way).
//
// Grid: x = split * row_tiles + (row_tiles - 1 - row tile), so the longest causal tiles
// start first; y = KV head; z = sequence. Row tiles hold 16 * WM packed rows and are sized
// from the host bound max_q_len; CTAs past a sequence's rows exit at once.
//
// Warps: WM x WN. Warp (wm, wn) owns rows wm*16 .. wm*16+15 of the CTA and keys
// wn*BN/WN .. of every BN-key tile. Prefill uses WN = 1 (4 or 8 warps split the rows, the
// FA2 layout); decode uses WM = 1 (one 16-row tile: up to 16 heads of one token) and splits
// the keys of each tile across WN warps, which keep separate online-softmax states that
// are merged through shared memory at the end.
//
// Per warp and key tile: S = Q K^T (Q fragments kept in registers when Dh <= 128, else
// re-read with ldmatrix; K fragments by ldmatrix), scale into the log2 domain
// (scale * log2 e folded in, so exp2f), mask only on tiles that need it (causal diagonal,
// sliding window, split end), online softmax (row max over the 4 lanes of a quad, rescale
// of the running sum and output), P rounded to bf16 in registers as the A operand, then
// O += P V with V fragments by ldmatrix.trans.
//
// K/V tiles: cp.async 16-byte copies into two stages (double buffering: the next tile loads
// while this one is computed). A tile's key rows are gathered one by one through the page
// table (any block size >= 1: a 64-key tile may span 64 pages); rows past the key range, a
// page index past the sequence's page list or a block id outside [0, num_blocks) are
// zero-filled instead of read. Shared rows are padded to Dh + 8 bf16 so the 8 rows of an
// ldmatrix land in 8 different bank groups. With Q in registers its shared tile is the
// second K/V stage, loaded before the pipeline starts.
//
// Split-KV (flash-decoding): with num_splits > 1 the key range a row tile sees is cut into
// num_splits chunks of ceil(keys / num_splits) rounded up to whole BN-key tiles, computed on
// the device per sequence (so a split count sized for a longer context just leaves the
// last splits empty). Split s writes the normalised partial output and its log2-sum-exp
// per (split, token, head) to q->scratch, and attn_merge_kernel combines the splits. With
// one split the kernel writes bf16 out.
//
// Hopper note: this is an mma.sync kernel, FA2-class on sm_90 (~350 TFLOP/s at Dh 128,
// roughly 0.55x FlashAttention-3). Reaching FA3 needs a separate sm_90a kernel: wgmma with
// Q/K/V in shared memory fed by TMA, producer/consumer warp specialisation with setmaxnreg,
// and softmax overlapped with the next tile's GEMMs. Not written yet.
#ifndef MYRMEX_CUDA_ATTENTION_CUH
#define MYRMEX_CUDA_ATTENTION_CUH

#include <stdint.h>

#include <atomic>

#include "cuda_internal.cuh"

// Everything a kernel needs, by value in the parameter space.
struct AttnArgs {
    const __nv_bfloat16 *q;                  // [T, Hq, Dh]
    const __nv_bfloat16 *k_cache, *v_cache;  // [num_blocks, block_size, Hkv, Dh]
    __nv_bfloat16 *out;                      // [T, Hq, Dh]
    const int32_t *q_start;                  // [S + 1] device
    const int32_t *ctx_len;                  // [S] device
    const int32_t *kv_indptr;                // [S + 1] device
    const int32_t *kv_indices;               // [kv_indptr[S]] device
    float *partial_o;                        // [num_splits, T, Hq, Dh] f32 (num_splits > 1)
    float *partial_lse;                      // [num_splits, T, Hq] f32, log2 domain
    int n_seqs, n_tokens, n_q_heads, n_kv_heads, group, head_dim, block_size, num_blocks;
    int window;                              // sliding window, 0 = none
    float scale_log2;                        // softmax scale * log2(e)
    int row_tiles, num_splits;               // set by attn_run_tiled
};

// Host-side launch bounds and test overrides, filled by cuda_attention().
struct AttnPlan {
    int max_q_len;     // >= every sequence's query count, clamped to n_tokens
    int max_ctx_len;   // >= every ctx_len (only sizes the split count)
    int forced_splits; // > 0: use this many KV splits (tests of the merge path); 0: heuristic
};

// ---- launchers shared between the attention files ----------------------------------------
// Each returns OPS_ERR_UNSUPPORTED (having launched nothing) when its fast path does not
// cover the shape or the device; cuda_attention() then uses the generic kernel.
int attn_prefill_launch(AttnArgs a, const AttnPlan &plan, CudaQueue *q); // cuda_attention_prefill.cu
int attn_decode_launch(AttnArgs a, const AttnPlan &plan, CudaQueue *q);  // cuda_attention_decode.cu
// Combines a.num_splits partials into bf16 out (a.head_dim % 4 == 0). cuda_attention_decode.cu
int attn_merge_launch(const AttnArgs &a, CudaQueue *q);
// How many KV splits to use: enough CTAs to fill `slots` resident CTAs with few idle ones
// in the last wave, each split at least kAttnMinSplitKeys keys, and every split's partials
// (split_bytes each) inside the scratch. cuda_attention.cu
int attn_num_splits(long long units, long long slots, int max_ctx_len, size_t split_bytes,
                    const CudaQueue *q, int forced);

constexpr int kAttnMaxSplits = 64;      // attn_merge_kernel keeps one weight per split per lane pair
constexpr int kAttnMinSplitKeys = 128;  // a split must read at least this many keys

// ---- PTX wrappers -------------------------------------------------------------------------

// 16-byte global -> shared copy; src_bytes = 0 writes zeros and reads nothing.
__device__ __forceinline__ void attn_cp_async16(void *smem, const void *gmem, int src_bytes) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void attn_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void attn_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void attn_ldmatrix_x4(uint32_t r[4], const void *smem) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void attn_ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
    const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c[16x8 f32] += a[16x16 bf16, row] * b[16x8 bf16, col]
__device__ __forceinline__ void attn_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> bf16x2 (lo in the low half, as the mma operands expect).
__device__ __forceinline__ uint32_t attn_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// ---- shared device helpers ----------------------------------------------------------------

// Clamped query-row range of sequence `seq`: [*begin, *end) within [0, n_tokens).
__device__ __forceinline__ void attn_seq_rows(const AttnArgs &a, int seq, int *begin, int *end) {
    int b = a.q_start[seq], e = a.q_start[seq + 1];
    b = min(max(b, 0), a.n_tokens);
    e = min(max(e, b), a.n_tokens);
    *begin = b;
    *end = e;
}

// Element offset of key `key` of KV head kvh in the cache, or -1 when its page is missing
// or its block id is out of range (the caller then skips or zero-fills the row).
__device__ __forceinline__ long long attn_key_offset(const AttnArgs &a, const int32_t *pages, int n_pages,
                                                     int kvh, int key) {
    const int page = key / a.block_size;
    if (page >= n_pages) return -1;
    const int block = __ldg(pages + page);
    if (block < 0 || block >= a.num_blocks) return -1;
    const long long slot = (long long)block * a.block_size + (key - page * a.block_size);
    return (slot * a.n_kv_heads + kvh) * a.head_dim;
}

// ---- the tile kernel ----------------------------------------------------------------------

template <int DH, int WM, int WN, int BN, bool Q_IN_REGS>
struct AttnTile {
    static constexpr int kThreads = 32 * WM * WN;
    static constexpr int kRows = 16 * WM;          // packed (query, head) rows per CTA
    static constexpr int kWarpKeys = BN / WN;      // keys of each tile one warp handles
    static constexpr int kStride = DH + 8;         // shared row stride in bf16 (16 B pad)
    static constexpr int kChunks = DH / 8;         // 16-byte chunks per row
    static constexpr int kStageElems = 2 * BN * kStride;  // K rows, then V rows
    static constexpr int kQElems = kRows * kStride;
    static constexpr size_t kSmemBytes =
        (size_t)(2 * kStageElems + (Q_IN_REGS ? 0 : kQElems)) * sizeof(__nv_bfloat16);
    // WN > 1: per-warp (o[rows][DH], m[rows], l[rows]) in f32, over the stage buffers
    static constexpr size_t kMergeBytes = WN > 1 ? (size_t)WN * kRows * (DH + 2) * sizeof(float) : 0;

    static_assert(DH % 16 == 0 && DH >= 16 && DH <= 256, "head dim: multiple of 16 up to 256");
    static_assert(kWarpKeys % 16 == 0, "each warp needs whole k16 steps of keys");
    static_assert(!Q_IN_REGS || kRows <= 2 * BN, "Q tile must fit in the second stage");
    static_assert(kMergeBytes <= 2 * kStageElems * sizeof(__nv_bfloat16), "merge buffer must fit the stages");
};

// Copies the packed query rows [row0, row0 + kRows) into q_sh (zeros past n_rows).
template <class Tile>
__device__ __forceinline__ void attn_load_q(__nv_bfloat16 *q_sh, const AttnArgs &a, int q_begin, int n_rows,
                                            int row0, int kvh, int tid) {
    constexpr int kTotal = Tile::kRows * Tile::kChunks;
    const int G = a.group;
#pragma unroll
    for (int i = 0; i < (kTotal + Tile::kThreads - 1) / Tile::kThreads; i++) {
        const int idx = tid + i * Tile::kThreads;
        if (kTotal % Tile::kThreads != 0 && idx >= kTotal) break;
        const int r = idx / Tile::kChunks, c = idx % Tile::kChunks;
        const int gr = row0 + r;
        const __nv_bfloat16 *src = a.q;
        int bytes = 0;
        if (gr < n_rows) {
            const long long token = q_begin + gr / G;
            const int head = kvh * G + gr % G;
            src = a.q + (token * a.n_q_heads + head) * Tile::kChunks * 8 + c * 8;
            bytes = 16;
        }
        attn_cp_async16(q_sh + r * Tile::kStride + c * 8, src, bytes);
    }
}

// Copies keys [key0, key0 + BN) of KV head kvh into k_sh / v_sh (zeros past key_end or
// where attn_key_offset finds no row).
template <class Tile, int BN>
__device__ __forceinline__ void attn_load_kv(__nv_bfloat16 *k_sh, __nv_bfloat16 *v_sh, const AttnArgs &a,
                                             const int32_t *pages, int n_pages, int kvh, int key0,
                                             int key_end, int tid) {
    constexpr int kTotal = BN * Tile::kChunks;
    // Fixed trip count, unrolled: the page-table loads of all iterations issue together.
#pragma unroll
    for (int i = 0; i < (kTotal + Tile::kThreads - 1) / Tile::kThreads; i++) {
        const int idx = tid + i * Tile::kThreads;
        if (kTotal % Tile::kThreads != 0 && idx >= kTotal) break;
        const int r = idx / Tile::kChunks, c = idx % Tile::kChunks;
        const int key = key0 + r;
        const __nv_bfloat16 *k_src = a.k_cache, *v_src = a.v_cache;
        int bytes = 0;
        if (key < key_end) {
            const long long off = attn_key_offset(a, pages, n_pages, kvh, key);
            if (off >= 0) {
                k_src += off + c * 8;
                v_src += off + c * 8;
                bytes = 16;
            }
        }
        attn_cp_async16(k_sh + r * Tile::kStride + c * 8, k_src, bytes);
        attn_cp_async16(v_sh + r * Tile::kStride + c * 8, v_src, bytes);
    }
}

// Row of the partial buffers that (split, token, head) writes: partial_o[row][Dh], partial_lse[row].
__device__ __forceinline__ size_t attn_partial_row(const AttnArgs &a, int split, long long token, int head) {
    return ((size_t)split * a.n_tokens + (size_t)token) * a.n_q_heads + head;
}

template <int DH, int WM, int WN, int BN, bool Q_IN_REGS, int MIN_BLOCKS>
__global__ void __launch_bounds__(32 * WM * WN, MIN_BLOCKS) attn_tile_kernel(const AttnArgs a) {
    using Tile = AttnTile<DH, WM, WN, BN, Q_IN_REGS>;
    constexpr int kRows = Tile::kRows, kStride = Tile::kStride, kWarpKeys = Tile::kWarpKeys;
    constexpr int kSAtoms = kWarpKeys / 8;  // n8 atoms of S per warp
    constexpr int kOAtoms = DH / 8;         // n8 atoms of O
    constexpr int kKSteps = DH / 16;        // k16 steps of Q K^T

    extern __shared__ uint4 attn_smem[];
    __nv_bfloat16 *const smem = reinterpret_cast<__nv_bfloat16 *>(attn_smem);
    __nv_bfloat16 *const q_sh = Q_IN_REGS ? smem + Tile::kStageElems : smem + 2 * Tile::kStageElems;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp % WM, warp_n = warp / WM;
    const int tile = a.row_tiles - 1 - (int)(blockIdx.x % (unsigned)a.row_tiles);
    const int split = (int)(blockIdx.x / (unsigned)a.row_tiles);
    const int kvh = blockIdx.y, seq = blockIdx.z;
    const int G = a.group;

    int q_begin, q_end;
    attn_seq_rows(a, seq, &q_begin, &q_end);
    const int n_q = q_end - q_begin;
    const int n_rows = n_q * G;  // host checks T * Hq fits in int
    const int row0 = tile * kRows;
    if (row0 >= n_rows) return;  // uniform: the whole CTA is past this sequence

    // Positions: query i of the sequence is token ctx - n_q + i of its context.
    const long long first_pos = (long long)max(a.ctx_len[seq], 0) - n_q;
    const int last_row = min(row0 + kRows, n_rows) - 1;
    const long long pos_min = first_pos + row0 / G, pos_max = first_pos + last_row / G;
    const long long window = a.window;
    // Keys any row of the tile may see: [key_lo, key_hi).
    const long long key_lo = window > 0 ? max(pos_min - window + 1, 0LL) : 0LL;
    const long long key_hi = max(pos_max + 1, key_lo);
    // This split's chunk of them, in whole tiles: with a split count sized for a longer
    // context (a graph captured at the model's limit) the surplus splits get no keys.
    const long long chunk = ((key_hi - key_lo + a.num_splits - 1) / a.num_splits + BN - 1) / BN * BN;
    const int kv_begin = (int)min(key_lo + split * chunk, key_hi);
    const int kv_end = (int)min(kv_begin + chunk, key_hi);
    const int n_tiles = (kv_end - kv_begin + BN - 1) / BN;
    // Lowest key the latest row sees: tiles from here on need no window mask.
    const long long lo_of_max = window > 0 ? max(pos_max - window + 1, 0LL) : 0LL;

    int page_begin = a.kv_indptr[seq];
    int n_pages = a.kv_indptr[seq + 1] - page_begin;
    if (page_begin < 0 || n_pages < 0) page_begin = n_pages = 0;
    const int32_t *pages = a.kv_indices + page_begin;

    // The two rows this thread holds in mma C fragments: g and g + 8 of its warp's 16.
    int row_pos[2], row_lo[2];
    for (int r = 0; r < 2; r++) {
        const int local = warp_m * 16 + (lane >> 2) + 8 * r;
        const long long pos = first_pos + (row0 + local) / G;
        row_pos[r] = (int)min(pos, (long long)kv_end);  // padding rows: any key < kv_end
        row_lo[r] = window > 0 ? (int)max(pos - window + 1, -1LL) : -1;
    }

    // Prologue: Q and the first K/V tile, then Q into registers when it lives in stage 1.
    attn_load_q<Tile>(q_sh, a, q_begin, n_rows, row0, kvh, tid);
    if (n_tiles > 0) attn_load_kv<Tile, BN>(smem, smem + BN * kStride, a, pages, n_pages, kvh, kv_begin, kv_end, tid);
    attn_cp_async_commit();
    attn_cp_async_wait<0>();
    __syncthreads();

    uint32_t q_frag[Q_IN_REGS ? kKSteps : 1][4];
    const int a_row = warp_m * 16 + (lane & 15), a_col = (lane >> 4) * 8;  // ldmatrix A addressing
    if constexpr (Q_IN_REGS) {
#pragma unroll
        for (int ks = 0; ks < kKSteps; ks++) attn_ldmatrix_x4(q_frag[ks], q_sh + a_row * kStride + ks * 16 + a_col);
        __syncthreads();  // stage 1 is overwritten by the first prefetch below
    }

    float o[kOAtoms][4];
#pragma unroll
    for (int i = 0; i < kOAtoms; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

    // ldmatrix addressing of B operands within the warp's key slice
    const int kb_row = (lane >> 4) * 8 + (lane & 7), kb_col = ((lane >> 3) & 1) * 8;  // K: non-trans
    const int vb_row = ((lane >> 3) & 1) * 8 + (lane & 7), vb_col = (lane >> 4) * 8;  // V: trans
    const int warp_key0 = warp_n * kWarpKeys;

    for (int it = 0; it < n_tiles; it++) {
        const int key0 = kv_begin + it * BN;
        if (it + 1 < n_tiles) {
            __nv_bfloat16 *next = smem + ((it + 1) & 1) * Tile::kStageElems;
            attn_load_kv<Tile, BN>(next, next + BN * kStride, a, pages, n_pages, kvh, key0 + BN, kv_end, tid);
        }
        attn_cp_async_commit();  // possibly empty: keeps the group count uniform
        attn_cp_async_wait<1>(); // this tile's group has landed
        __syncthreads();

        const __nv_bfloat16 *k_sh = smem + (it & 1) * Tile::kStageElems;
        const __nv_bfloat16 *v_sh = k_sh + BN * kStride;

        // S = Q K^T for this warp's 16 rows x kWarpKeys keys
        float s[kSAtoms][4];
#pragma unroll
        for (int i = 0; i < kSAtoms; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < kKSteps; ks++) {
            uint32_t a_frag[4];
            if constexpr (Q_IN_REGS) {
                a_frag[0] = q_frag[ks][0];
                a_frag[1] = q_frag[ks][1];
                a_frag[2] = q_frag[ks][2];
                a_frag[3] = q_frag[ks][3];
            } else {
                attn_ldmatrix_x4(a_frag, q_sh + a_row * kStride + ks * 16 + a_col);
            }
#pragma unroll
            for (int np = 0; np < kSAtoms / 2; np++) {
                uint32_t b[4];
                attn_ldmatrix_x4(b, k_sh + (warp_key0 + np * 16 + kb_row) * kStride + ks * 16 + kb_col);
                attn_mma_bf16(s[2 * np], a_frag, b[0], b[1]);
                attn_mma_bf16(s[2 * np + 1], a_frag, b[2], b[3]);
            }
        }

        // Scale into the log2 domain, then mask (after scaling: a negative scale would
        // turn -inf into +inf).
#pragma unroll
        for (int i = 0; i < kSAtoms; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] *= a.scale_log2;
        const bool need_mask = key0 + BN > kv_end || key0 + BN - 1 > pos_min || key0 < lo_of_max;
        if (need_mask) {
#pragma unroll
            for (int i = 0; i < kSAtoms; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + warp_key0 + i * 8 + (lane & 3) * 2 + (e & 1);
                    const int r = e >> 1;
                    if (key >= kv_end || key > row_pos[r] || key < row_lo[r]) s[i][e] = -INFINITY;
                }
        }

        // Online softmax per row; a row is spread over the 4 lanes of a quad.
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < kSAtoms; i++) mx = fmaxf(mx, fmaxf(s[i][2 * r], s[i][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float new_max = fmaxf(row_max[r], mx);
            const float base = new_max == -INFINITY ? 0.0f : new_max;  // no inf - inf
            const float alpha = exp2f(row_max[r] - base);
            row_max[r] = new_max;
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < kSAtoms; i++) {
                s[i][2 * r] = exp2f(s[i][2 * r] - base);
                s[i][2 * r + 1] = exp2f(s[i][2 * r + 1] - base);
                sum += s[i][2 * r] + s[i][2 * r + 1];
            }
            row_sum[r] = row_sum[r] * alpha + sum;  // this lane's columns; quad-summed at the end
#pragma unroll
            for (int i = 0; i < kOAtoms; i++) {
                o[i][2 * r] *= alpha;
                o[i][2 * r + 1] *= alpha;
            }
        }

        // O += P V: P's C fragments of two adjacent n8 atoms are the A fragment of one k16 step.
#pragma unroll
        for (int kp = 0; kp < kWarpKeys / 16; kp++) {
            uint32_t p_frag[4];
            p_frag[0] = attn_pack_bf16(s[2 * kp][0], s[2 * kp][1]);
            p_frag[1] = attn_pack_bf16(s[2 * kp][2], s[2 * kp][3]);
            p_frag[2] = attn_pack_bf16(s[2 * kp + 1][0], s[2 * kp + 1][1]);
            p_frag[3] = attn_pack_bf16(s[2 * kp + 1][2], s[2 * kp + 1][3]);
#pragma unroll
            for (int dp = 0; dp < kOAtoms / 2; dp++) {
                uint32_t b[4];
                attn_ldmatrix_x4_trans(b, v_sh + (warp_key0 + kp * 16 + vb_row) * kStride + dp * 16 + vb_col);
                attn_mma_bf16(o[2 * dp], p_frag, b[0], b[1]);
                attn_mma_bf16(o[2 * dp + 1], p_frag, b[2], b[3]);
            }
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }
    attn_cp_async_wait<0>();

#pragma unroll
    for (int r = 0; r < 2; r++) {
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
        row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    }

    const int Hq = a.n_q_heads;
    if constexpr (WN == 1) {
        // Straight from the fragments: lane holds columns (lane & 3) * 2 + {0, 1} of each atom.
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int gr = row0 + warp_m * 16 + (lane >> 2) + 8 * r;
            if (gr >= n_rows) continue;
            const long long token = q_begin + gr / G;
            const int head = kvh * G + gr % G;
            const float inv = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
            if (a.num_splits == 1) {
                __nv_bfloat16 *dst = a.out + ((size_t)token * Hq + head) * DH + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < kOAtoms; i++)
                    *reinterpret_cast<__nv_bfloat162 *>(dst + i * 8) =
                        __floats2bfloat162_rn(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
            } else {
                const size_t prow = attn_partial_row(a, split, token, head);
                float *dst = a.partial_o + prow * DH + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < kOAtoms; i++)
                    *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
                if ((lane & 3) == 0)
                    a.partial_lse[prow] = row_sum[r] > 0.0f ? row_max[r] + log2f(row_sum[r]) : -INFINITY;
            }
        }
    } else {
        // Each warp saw a different slice of the keys: merge the WN states per row.
        float *red_o = reinterpret_cast<float *>(attn_smem);  // [WN][kRows][DH]
        float *red_max = red_o + WN * kRows * DH;             // [WN][kRows]
        float *red_sum = red_max + WN * kRows;                // [WN][kRows]
        __syncthreads();  // all warps are done with the stage buffers
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = warp_m * 16 + (lane >> 2) + 8 * r;
            float *dst = red_o + (warp_n * kRows + row) * DH + (lane & 3) * 2;
#pragma unroll
            for (int i = 0; i < kOAtoms; i++)
                *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * r], o[i][2 * r + 1]);
            if ((lane & 3) == 0) {
                red_max[warp_n * kRows + row] = row_max[r];
                red_sum[warp_n * kRows + row] = row_sum[r];
            }
        }
        __syncthreads();
        for (int idx = tid; idx < kRows * DH; idx += Tile::kThreads) {
            const int row = idx / DH, d = idx % DH;
            const int gr = row0 + row;
            if (gr >= n_rows) continue;
            float m = -INFINITY;
#pragma unroll
            for (int w = 0; w < WN; w++) m = fmaxf(m, red_max[w * kRows + row]);
            const float base = m == -INFINITY ? 0.0f : m;
            float sum = 0.0f, acc = 0.0f;
#pragma unroll
            for (int w = 0; w < WN; w++) {
                const float weight = exp2f(red_max[w * kRows + row] - base);
                sum += red_sum[w * kRows + row] * weight;
                acc += red_o[(w * kRows + row) * DH + d] * weight;
            }
            const float value = sum > 0.0f ? acc / sum : 0.0f;
            const long long token = q_begin + gr / G;
            const int head = kvh * G + gr % G;
            if (a.num_splits == 1) {
                a.out[((size_t)token * Hq + head) * DH + d] = __float2bfloat16_rn(value);
            } else {
                const size_t prow = attn_partial_row(a, split, token, head);
                a.partial_o[prow * DH + d] = value;
                if (d == 0) a.partial_lse[prow] = sum > 0.0f ? m + log2f(sum) : -INFINITY;
            }
        }
    }
}

// ---- host side: one configuration's launch ------------------------------------------------

// Launches attn_tile_kernel<...> over every (row tile, split, KV head, sequence), then the
// merge when it split the keys. OPS_ERR_UNSUPPORTED (nothing launched) when the
// configuration does not fit the device.
template <int DH, int WM, int WN, int BN, bool Q_IN_REGS, int MIN_BLOCKS>
int attn_run_tiled(AttnArgs a, const AttnPlan &plan, CudaQueue *q) {
    using Tile = AttnTile<DH, WM, WN, BN, Q_IN_REGS>;
    void (*kernel)(const AttnArgs) = attn_tile_kernel<DH, WM, WN, BN, Q_IN_REGS, MIN_BLOCKS>;
    const size_t smem = Tile::kSmemBytes;
    if (a.head_dim != DH || smem > q->smem_optin || a.n_kv_heads > 65535 || a.n_seqs > 65535)
        return OPS_ERR_UNSUPPORTED;
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess) {
        cudaGetLastError();  // not sticky: clear it so the fallback's launch status is clean
        return OPS_ERR_UNSUPPORTED;
    }
    // Resident CTAs per SM, asked once per configuration (same for every GPU of a process
    // in practice; a wrong guess only changes the split count).
    static std::atomic<int> cached_occupancy{0};
    int occupancy = cached_occupancy.load(std::memory_order_relaxed);
    if (occupancy <= 0) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, kernel, Tile::kThreads, smem) != cudaSuccess ||
            occupancy < 1) {
            cudaGetLastError();
            occupancy = 1;
        }
        cached_occupancy.store(occupancy, std::memory_order_relaxed);
    }

    const long long row_tiles = ((long long)plan.max_q_len * a.group + Tile::kRows - 1) / Tile::kRows;
    const long long units = row_tiles * a.n_kv_heads * a.n_seqs;
    const size_t split_bytes = (size_t)a.n_tokens * a.n_q_heads * (DH + 1) * sizeof(float);
    const int splits = attn_num_splits(units, (long long)q->num_sms * occupancy, plan.max_ctx_len, split_bytes, q,
                                       plan.forced_splits);
    if (row_tiles * splits > 0x7fffffffLL) return OPS_ERR_UNSUPPORTED;

    a.row_tiles = (int)row_tiles;
    a.num_splits = splits;
    a.partial_o = splits > 1 ? (float *)q->scratch : nullptr;
    a.partial_lse = splits > 1 ? a.partial_o + (size_t)splits * a.n_tokens * a.n_q_heads * DH : nullptr;

    const dim3 grid((unsigned)(row_tiles * splits), (unsigned)a.n_kv_heads, (unsigned)a.n_seqs);
    kernel<<<grid, Tile::kThreads, smem, q->stream>>>(a);
    const int rc = cuda_launch_status();
    if (rc != OPS_OK || splits == 1) return rc;
    return attn_merge_launch(a, q);
}

#endif
