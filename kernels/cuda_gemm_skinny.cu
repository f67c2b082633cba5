// Skinny GEMM (the decode regime) and lm_head: out[m, n] = sum_k x[m, k] * w[n, k] for small M.
//
// With M <= 64 the GEMM is bound by reading w ([N, K] bf16, the Hugging Face Linear layout)
// from DRAM, so the kernel is built to stream w once at full bandwidth and to make the
// arithmetic free:
//
// - Tensor cores do the arithmetic. One mma.sync.m16n8k16 multiplies 16 weight rows (the MMA
//   "A", row-major) by 8 activation rows (the MMA "B", which m16n8k16 wants K-major, and x is
//   K-major). The sum over k does not care which real k sits in which MMA k-slot as long as A
//   and B agree, and in both fragments lane (g = lane/4, t = lane%4) holds k-slots
//   {2t, 2t+1, 2t+8, 2t+9}. So each lane loads 8 consecutive k (16 bytes) of weight rows g and
//   g+8 and of activation row g, and feeds the first 4 to one MMA and the last 4 to a second:
//   weights go straight from DRAM to registers with 16-byte loads, no shared memory, no
//   ldmatrix. A warp covers 16 weight rows x 32 k per step (two MMAs per 8 activation rows).
// - A CTA is 8 warps = 128 weight rows; each warp streams its 16 rows over the CTA's k range
//   in batches of 2-4 steps, double-buffered in registers (the loads of batch b+1 are issued
//   before the MMAs of batch b), which keeps 4-16 loads of 16 bytes in flight per thread.
// - All M rows of a chunk (up to 64 = MT m-subtiles of 8) are done by the same warp, so w is
//   read once for M <= 64 (once per 64 rows beyond that). The chunk's activations are staged
//   into shared memory in 16 KB stages (cp.async, two buffers) and shared by the 8 warps;
//   rows are padded by 64 bytes so the 16-byte fragment reads are bank-conflict free.
// - Split-K across CTAs when N / 128 CTAs cannot fill the GPU: each split writes fp32
//   partials [splits, M, N] to q->scratch and a second kernel sums them in split order, so
//   the result is the same on every run.
// - Anything the fast path cannot do (K % 8 != 0, x or w not 16-byte aligned) goes to a
//   plain warp-per-output-row kernel with scalar loads.
//
// lm_head is the same kernels with two differences, both runtime-light: the activation row
// of output row r is hidden[clamp(rows[r], 0, T-1)] (rows live in device memory), and the
// output type is f32 (a template parameter).
#include "cuda_internal.cuh"

namespace {

constexpr int kThreads = 256;        // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kCtaRows = kWarps * 16; // weight rows (outputs n) per CTA
constexpr int kStepK = 32;           // k per warp step: 4 lanes x 8 k per weight row
constexpr int kSplitGrainK = 128;    // split boundaries are multiples of this (of every batch)
constexpr int kStageBytes = 16384;   // activation bytes per shared-memory stage buffer
constexpr int kRowPad = 32;          // bf16 of padding per staged row: row stride = 64 mod 128 B
constexpr int kGenericRows = 8;      // activation rows per warp in the generic kernel
// Rows handled per launch (grid.z <= 65535 chunks of 64; generic grid.y <= 65535 chunks of 8).
constexpr int kMPiece = 8191 * 64;

// Compile-time layout of one instantiation: MT m-subtiles of 8 activation rows.
template <int MT>
struct Tile {
    static constexpr int kRows = 8 * MT;
    static constexpr int kStageK = kStageBytes / (2 * kRows);  // 1024, 512, 256, 128 k
    static constexpr int kRowStride = kStageK + kRowPad;         // elements
    static constexpr int kBatchSteps = MT >= 4 ? 2 : 4; // MT >= 4: registers go to accumulators
    static constexpr int kBatchK = kBatchSteps * kStepK;
    static constexpr int kBatchesPerStage = kStageK / kBatchK;
    static constexpr int kChunksPerRow = kStageK / 8;           // 16-byte chunks
    static constexpr int kCopyPasses = kRows * kChunksPerRow / kThreads;
    static constexpr int kRowsPerPass = kThreads / kChunksPerRow;
    static_assert(kStageK % kBatchK == 0 && kSplitGrainK % kBatchK == 0, "batch tiling");
    static_assert(kThreads % kChunksPerRow == 0 && kRowsPerPass * kCopyPasses == kRows,
                  "copy tiling: a thread copies the same column in every pass");
    static_assert((kRowStride * 2) % 128 == 64, "bank-conflict-free row stride");
};

// Everything a launch needs; rows == nullptr means output row m reads activation row m.
template <typename OutT>
struct SkinnyArgs {
    const __nv_bfloat16 *x;  // [x_rows, K] activations (bf16)
    const int32_t *rows;     // [M] gather indices into x, clamped to [0, x_rows); or nullptr
    int x_rows;
    const __nv_bfloat16 *w;  // [N, K] weights
    OutT *out;               // [M, N]
    float *partial;          // [splits, M, N] f32 when splits > 1
    int m, n, k;
    int split_k;             // k per split (multiple of kSplitGrainK)
    int splits;
};

template <typename OutT>
__device__ __forceinline__ OutT from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Activation row that output row m reads (m < M).
__device__ __forceinline__ int source_row(const int32_t *rows, int x_rows, int m) {
    if (!rows) return m;
    const int r = rows[m];
    return r < 0 ? 0 : (r >= x_rows ? x_rows - 1 : r);
}

// 16 bytes of weights that are read exactly once: keep them out of L1, fetch 256 B lines.
__device__ __forceinline__ uint4 load_stream_16(const __nv_bfloat16 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// 16-byte global -> shared copy; valid == false writes zeros and reads nothing.
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, bool valid) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all_but_one() {
    asm volatile("cp.async.wait_group 1;" ::: "memory");
}

// d += A (16 x 16, row-major) * B (16 x 8, K-major), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ---- fast kernel ----------------------------------------------------------------------------
// grid: x = ceil(N / 128) weight-row blocks, y = splits, z = ceil(M / (8 * MT)) row chunks.
template <int MT, typename OutT>
__global__ void __launch_bounds__(kThreads, 2) skinny_mma_kernel(const SkinnyArgs<OutT> a) {
    using T = Tile<MT>;
    constexpr int kSteps = T::kBatchSteps;
    __shared__ __align__(16) __nv_bfloat16 xs[2][T::kRows * T::kRowStride];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int n_warp = blockIdx.x * kCtaRows + warp * 16; // this warp's first weight row
    const int m_base = blockIdx.z * T::kRows;
    const int k_begin = blockIdx.y * a.split_k;           // < K (host guarantees)
    const int k_end = min(a.k, k_begin + a.split_k);
    const int k_len = k_end - k_begin;
    const int n_batches = (k_len + T::kBatchK - 1) / T::kBatchK;
    const bool rows_live = n_warp < a.n; // warp-uniform: a warp past N loads nothing

    // Weight rows g and g + 8 of this warp (clamped so the pointers stay inside w), at k = 8t.
    const int r0 = min(n_warp + g, a.n - 1), r1 = min(n_warp + g + 8, a.n - 1);
    const __nv_bfloat16 *w0 = a.w + (size_t)r0 * a.k + k_begin + 8 * t;
    const __nv_bfloat16 *w1 = a.w + (size_t)r1 * a.k + k_begin + 8 * t;

    // The activation chunks this thread copies in every stage: 16 bytes at column x_col of
    // rows x_row0 + p * kRowsPerPass, read from activation row x_src[p] (-1 past M: zeros).
    const int x_row0 = threadIdx.x / T::kChunksPerRow, x_col = (threadIdx.x % T::kChunksPerRow) * 8;
    int x_src[T::kCopyPasses];
#pragma unroll
    for (int p = 0; p < T::kCopyPasses; p++) {
        const int m = m_base + x_row0 + p * T::kRowsPerPass;
        x_src[p] = m < a.m ? source_row(a.rows, a.x_rows, m) : -1;
    }
    // Stage s holds k in [k_begin + s * kStageK, + kStageK) of every row; beyond k_end: zeros.
    auto stage_copy = [&](int s) {
        __nv_bfloat16 *dst = xs[s & 1] + x_row0 * T::kRowStride + x_col;
        const int kx = k_begin + s * T::kStageK + x_col;
        const bool k_ok = kx < k_end; // k_end % 8 == 0: a chunk is wholly in or out
#pragma unroll
        for (int p = 0; p < T::kCopyPasses; p++) {
            const bool ok = k_ok && x_src[p] >= 0;
            const __nv_bfloat16 *src = ok ? a.x + (size_t)x_src[p] * a.k + kx : a.x;
            cp_async_16(dst + p * T::kRowsPerPass * T::kRowStride, src, ok);
        }
    };

    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    // Weights of batch b: step j covers k = k_begin + b * kBatchK + j * 32 + 8t .. + 8.
    auto load_batch = [&](uint4 (&wr)[2 * kSteps], int b) {
#pragma unroll
        for (int j = 0; j < kSteps; j++) {
            const int off = b * T::kBatchK + j * kStepK;
            const bool ok = rows_live && k_begin + off + 8 * t < k_end;
            wr[2 * j] = ok ? load_stream_16(w0 + off) : make_uint4(0, 0, 0, 0);
            wr[2 * j + 1] = ok ? load_stream_16(w1 + off) : make_uint4(0, 0, 0, 0);
        }
    };
    // Before the first batch of stage s: retire stage s - 1's buffer, start copying stage s + 1
    // into it, wait for stage s. Every thread runs this at the same b (CTA-uniform loop).
    const int n_stages = (k_len + T::kStageK - 1) / T::kStageK;
    auto enter_batch = [&](int b) {
        if (b % T::kBatchesPerStage != 0) return;
        const int s = b / T::kBatchesPerStage;
        __syncthreads(); // everyone is done reading buffer (s + 1) & 1 (stage s - 1)
        if (s + 1 < n_stages) stage_copy(s + 1);
        cp_async_commit(); // possibly empty: keeps "all but one" meaning "stage s is in"
        cp_async_wait_all_but_one();
        __syncthreads(); // stage s visible to every warp
    };
    auto mma_batch = [&](const uint4 (&wr)[2 * kSteps], int b) {
        const __nv_bfloat16 *buf = xs[(b / T::kBatchesPerStage) & 1];
        const int k_in_stage = (b % T::kBatchesPerStage) * T::kBatchK + 8 * t;
#pragma unroll
        for (int j = 0; j < kSteps; j++) {
            const uint4 wa = wr[2 * j], wb = wr[2 * j + 1]; // rows g, g + 8; k = 8t .. 8t+7
#pragma unroll
            for (int i = 0; i < MT; i++) {
                const uint4 xv = *reinterpret_cast<const uint4 *>(
                    buf + (i * 8 + g) * T::kRowStride + k_in_stage + j * kStepK);
                mma_16816(acc[i], wa.x, wb.x, wa.y, wb.y, xv.x, xv.y); // k = 8t + 0..3
                mma_16816(acc[i], wa.z, wb.z, wa.w, wb.w, xv.z, xv.w); // k = 8t + 4..7
            }
        }
    };

    stage_copy(0);
    cp_async_commit();
    uint4 wa[2 * kSteps], wb[2 * kSteps];
    load_batch(wa, 0);
    for (int b = 0; b < n_batches; b += 2) {
        load_batch(wb, b + 1); // past the end: all predicated off (zeros)
        enter_batch(b);
        mma_batch(wa, b);
        if (b + 1 < n_batches) {
            load_batch(wa, b + 2);
            enter_batch(b + 1);
            mma_batch(wb, b + 1);
        }
    }

    // acc[i] = out^T tile: [0] (n g, m 2t), [1] (n g, m 2t+1), [2] (n g+8, m 2t), [3] (n g+8, m 2t+1).
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = m_base + i * 8 + 2 * t + (e & 1);
            const int n = n_warp + g + (e >> 1) * 8;
            if (m >= a.m || n >= a.n) continue;
            const size_t idx = (size_t)m * a.n + n;
            if (a.splits == 1)
                a.out[idx] = from_float<OutT>(acc[i][e]);
            else
                a.partial[(size_t)blockIdx.y * a.m * a.n + idx] = acc[i][e];
        }
    }
}

// out[i] = sum over splits, in split order (deterministic).
template <typename OutT>
__global__ void skinny_reduce_kernel(const float *partial, OutT *out, size_t count, int splits) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int sp = 0; sp < splits; sp++) s += partial[(size_t)sp * count + i];
        out[i] = from_float<OutT>(s);
    }
}

// ---- generic kernel (any K, any alignment) ---------------------------------------------------
// One warp per (weight row n, 8 activation rows); lanes stride over k, then a shuffle
// reduction. grid: x = ceil(N / 8 warps), y = ceil(M / 8).
template <typename OutT>
__global__ void __launch_bounds__(kThreads) skinny_generic_kernel(const SkinnyArgs<OutT> a) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int m0 = blockIdx.y * kGenericRows;
    if (n >= a.n) return; // warp-uniform; no barriers below
    const __nv_bfloat16 *wrow = a.w + (size_t)n * a.k;
    const __nv_bfloat16 *xrow[kGenericRows];
#pragma unroll
    for (int i = 0; i < kGenericRows; i++) {
        const int m = m0 + i;
        xrow[i] = m < a.m ? a.x + (size_t)source_row(a.rows, a.x_rows, m) * a.k : nullptr;
    }
    float acc[kGenericRows] = {};
    for (int k = lane; k < a.k; k += 32) {
        const float wv = __bfloat162float(wrow[k]);
#pragma unroll
        for (int i = 0; i < kGenericRows; i++)
            if (xrow[i]) acc[i] += wv * __bfloat162float(xrow[i][k]);
    }
#pragma unroll
    for (int i = 0; i < kGenericRows; i++) {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
    }
    if (lane < kGenericRows && m0 + lane < a.m) {
        float v = 0.0f;
#pragma unroll
        for (int i = 0; i < kGenericRows; i++) v = lane == i ? acc[i] : v;
        a.out[(size_t)(m0 + lane) * a.n + n] = from_float<OutT>(v);
    }
}

// ---- host side ------------------------------------------------------------------------------

// How many k-splits: enough CTAs for about two per SM (the occupancy __launch_bounds__ asks
// for), none when the row blocks alone come close; each split keeps >= 2 grains of k, and
// the partials must fit the scratch.
static int choose_splits(int units, int k, int m, int n, const CudaQueue *q) {
    const long long target = 2LL * (q->num_sms > 0 ? q->num_sms : 1);
    long long splits = 1;
    if (4LL * units < 3LL * target) {
        splits = target / units;
        if (splits < 1) splits = 1;
        if (4LL * units * splits < 3LL * target) splits++;
    }
    const long long grains = (k + kSplitGrainK - 1) / kSplitGrainK;
    if (splits > grains / 2) splits = grains / 2;
    const size_t per_split = (size_t)m * (size_t)n * sizeof(float);
    if (!q->scratch || per_split == 0) return 1;
    const size_t fit = q->scratch_bytes / per_split;
    if ((size_t)splits > fit) splits = (long long)fit;
    return splits < 1 ? 1 : (int)splits;
}

template <int MT, typename OutT>
static void launch_fast(SkinnyArgs<OutT> a, const CudaQueue *q) {
    const int chunk_rows = Tile<MT>::kRows;
    const dim3 grid(cuda_blocks((size_t)a.n, kCtaRows), (unsigned)a.splits,
                    cuda_blocks((size_t)a.m, chunk_rows));
    skinny_mma_kernel<MT, OutT><<<grid, kThreads, 0, q->stream>>>(a);
}

// One launch (plus the reduction) for at most kMPiece rows.
template <typename OutT>
static int skinny_piece(SkinnyArgs<OutT> a, bool fast, const CudaQueue *q) {
    if (!fast) {
        const dim3 grid(cuda_blocks((size_t)a.n, kWarps), cuda_blocks((size_t)a.m, kGenericRows));
        a.splits = 1;
        skinny_generic_kernel<OutT><<<grid, kThreads, 0, q->stream>>>(a);
        return cuda_launch_status();
    }
    const int mt = a.m <= 8 ? 1 : a.m <= 16 ? 2 : a.m <= 32 ? 4 : 8;
    const int chunks = (int)cuda_blocks((size_t)a.m, 8 * mt);
    const int units = (int)cuda_blocks((size_t)a.n, kCtaRows) * chunks;
    int splits = choose_splits(units, a.k, a.m, a.n, q);
    const int grains = (a.k + kSplitGrainK - 1) / kSplitGrainK;
    const int grains_per_split = (grains + splits - 1) / splits;
    a.split_k = grains_per_split * kSplitGrainK;
    a.splits = (grains + grains_per_split - 1) / grains_per_split; // every split non-empty
    a.partial = a.splits > 1 ? (float *)q->scratch : nullptr;
    switch (mt) {
    case 1: launch_fast<1>(a, q); break;
    case 2: launch_fast<2>(a, q); break;
    case 4: launch_fast<4>(a, q); break;
    default: launch_fast<8>(a, q); break;
    }
    if (a.splits > 1) {
        const size_t count = (size_t)a.m * a.n;
        unsigned blocks = cuda_blocks(count, kThreads);
        const unsigned cap = 8u * (unsigned)(q->num_sms > 0 ? q->num_sms : 1);
        if (blocks > cap) blocks = cap;
        skinny_reduce_kernel<OutT><<<blocks, kThreads, 0, q->stream>>>(a.partial, a.out, count,
                                                                       a.splits);
    }
    return cuda_launch_status();
}

// out[m, :] = x[rows ? clamp(rows[m]) : m, :] . w^T for m in [0, M).
template <typename OutT>
static int skinny_run(const __nv_bfloat16 *x, const int32_t *rows, int x_rows,
                      const __nv_bfloat16 *w, OutT *out, int m, int n, int k, const CudaQueue *q) {
    const bool fast = k % 8 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)w & 15) == 0;
    for (int m0 = 0; m0 < m; m0 += kMPiece) {
        SkinnyArgs<OutT> a = {};
        a.x = rows ? x : x + (size_t)m0 * k;
        a.rows = rows ? rows + m0 : nullptr;
        a.x_rows = x_rows;
        a.w = w;
        a.out = out + (size_t)m0 * n;
        a.m = m - m0 < kMPiece ? m - m0 : kMPiece;
        a.n = n;
        a.k = k;
        const int rc = skinny_piece(a, fast, q);
        if (rc != OPS_OK) return rc;
    }
    return OPS_OK;
}

static int weight_dtype_status(DType t) {
    if (t != DT_F32 && t != DT_F16 && t != DT_BF16) return OPS_ERR_ARG;
    return t == DT_BF16 ? OPS_OK : OPS_ERR_UNSUPPORTED;
}

} // namespace

int cuda_gemm_skinny(const GemmParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->w || !p->out) return OPS_ERR_ARG;
    const int dt = weight_dtype_status(p->w_dtype);
    if (dt != OPS_OK) return dt;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    if (p->m == 0) return OPS_OK;
    return skinny_run((const __nv_bfloat16 *)p->x, nullptr, p->m, (const __nv_bfloat16 *)p->w,
                      (__nv_bfloat16 *)p->out, p->m, p->n, p->k, q);
}

int cuda_lm_head(const LmHeadParams *p, CudaQueue *q) {
    if (!p || !q || !p->hidden || !p->rows || !p->w || !p->logits) return OPS_ERR_ARG;
    const int dt = weight_dtype_status(p->w_dtype);
    if (dt != OPS_OK) return dt;
    if (p->n_rows < 0 || p->n_tokens < 0 || p->dim < 1 || p->vocab < 1) return OPS_ERR_ARG;
    if (p->n_rows == 0) return OPS_OK;
    if (p->n_tokens == 0) return OPS_ERR_ARG; // every row index would be out of range
    return skinny_run((const __nv_bfloat16 *)p->hidden, p->rows, p->n_tokens,
                      (const __nv_bfloat16 *)p->w, p->logits, p->n_rows, p->vocab, p->dim, q);
}
