// Large-M GEMM with mma.sync (the prefill regime on sm_80 / sm_89; a fallback on sm_90, where
// the wgmma kernel is the main path): out[m, n] = sum_k x[m, k] * w[n, k], bf16 in and out,
// f32 accumulation.
//
// Fast path (K % 8 == 0, x and w 16-byte aligned; any M, any N):
// - A CTA computes a 128 x 128 tile of out with 8 warps in a 2 (m) x 4 (n) grid; each warp
//   owns 64 x 32 = 4 x 4 mma.m16n8k16 tiles (64 f32 accumulators per thread).
// - Both operands are K-major (x is [M, K], w is [N, K]), which is what m16n8k16 wants for A
//   ("row") and B ("col"), so both tiles are staged the same way: 128 rows x 64 k of bf16
//   (128 bytes per row) per stage, loaded with 16-byte cp.async into a STAGES-deep ring
//   (3 or 4 stages, 32 KB each, dynamic shared memory). Rows and k past the matrix are
//   zero-filled by cp.async, so partial tiles need no special case in the main loop.
// - Shared memory is swizzled: the 16-byte chunk c of row r lives at chunk c ^ (r % 8). The 8
//   row addresses of every ldmatrix 8x8 matrix then hit 8 different chunks (all 32 banks),
//   and so do the cp.async writes of a row.
// - Fragments come from ldmatrix.x4 (A: one m16 x k16 tile; B: two n8 x k16 tiles).
// - CTAs are rasterised in groups of 8 m-tiles sharing one n-tile, so consecutive CTAs reuse
//   the same weight tile from L2.
// - The epilogue converts to bf16 (round to nearest) and stores with bounds checks, two
//   columns at a time when N is even.
//
// Generic path (any K, any alignment; also the tiny-shape path): a 64 x 64 shared-memory
// tiled FMA kernel, 4 x 4 outputs per thread, scalar loads with bounds checks.
#include <atomic>

#include "cuda_internal.cuh"

namespace {

// ---- fast path: tiling ---------------------------------------------------------------------
constexpr int kTileM = 128, kTileN = 128, kTileK = 64;
constexpr int kThreads = 256;   // 8 warps: 2 along m x 4 along n
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kMmaM = kWarpM / 16, kMmaN = kWarpN / 8; // 4 x 4 mma tiles per warp
constexpr int kRowBytes = kTileK * 2;                  // 128 bytes = 8 chunks of 16
constexpr int kTileBytes = kTileM * kRowBytes;         // 16 KB per operand per stage
constexpr int kStageBytes = 2 * kTileBytes;            // A then B
constexpr int kGroupM = 8;                             // raster group (m-tiles per n-tile)
constexpr int kChunksPerThread = kTileM * (kRowBytes / 16) / kThreads; // 4 per operand
static_assert(kTileM == kTileN, "A and B tiles share one loader");

__device__ __forceinline__ unsigned smem_addr(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` inside a swizzled tile.
__device__ __forceinline__ int swizzle(int row, int chunk) {
    return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
}

__device__ __forceinline__ void cp_async_16(unsigned dst, const void *src, bool valid) {
    const int src_bytes = valid ? 16 : 0; // 0: zero-fill, nothing read
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// d += A (16 x 16, row-major) * B (16 x 8, K-major), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct MmaArgs {
    const __nv_bfloat16 *x; // [M, K]
    const __nv_bfloat16 *w; // [N, K]
    __nv_bfloat16 *out;     // [M, N]
    int m, n, k;
    int tiles_m, tiles_n;
    bool pair_store; // N even and out 4-byte aligned: store two columns at once
};

// The 4 chunks per operand this thread copies for every stage: rows row0 + 32 * i, chunk c.
struct TileLoader {
    const __nv_bfloat16 *src; // row row0 of the operand (clamped into the matrix), at k = 8c
    int rows_left;            // rows of the operand at and after row0 (<= 0: none)
    int k;                    // row length
    unsigned dst;             // shared address of (row0, chunk c) in stage 0, swizzled
    int chunk;

    __device__ void init(const __nv_bfloat16 *base, int row_start, int rows, int k_, unsigned tile) {
        const int row0 = threadIdx.x / 8;
        chunk = threadIdx.x % 8;
        k = k_;
        rows_left = rows - (row_start + row0);
        const int clamped = min(row_start + row0, rows - 1);
        src = base + (size_t)clamped * k + chunk * 8;
        dst = tile + swizzle(row0, chunk);
    }
    // Copies k-tile kt into the stage whose tile starts at dst + stage_offset.
    __device__ void load(int kt, unsigned stage_offset) const {
        const int kx = kt * kTileK + chunk * 8;
        const bool k_ok = kx < k; // K % 8 == 0: a chunk is wholly in or out
#pragma unroll
        for (int i = 0; i < kChunksPerThread; i++) {
            const int r = 32 * i; // swizzle(row0 + 32i, c) = swizzle(row0, c) + 32i rows
            const bool ok = k_ok && r < rows_left;
            const __nv_bfloat16 *p = ok ? src + (size_t)r * k + kt * kTileK : src;
            cp_async_16(dst + stage_offset + r * kRowBytes, p, ok);
        }
    }
};

template <int STAGES>
__global__ void __launch_bounds__(kThreads) gemm_mma_kernel(const MmaArgs a) {
    extern __shared__ __align__(128) unsigned char smem[];
    const unsigned smem_base = smem_addr(smem);

    // Grouped raster: kGroupM consecutive CTAs take consecutive m-tiles of one n-tile.
    const int tile = blockIdx.x;
    const int per_group = kGroupM * a.tiles_n;
    const int first_m = (tile / per_group) * kGroupM;
    const int group_m = min(a.tiles_m - first_m, kGroupM);
    const int tile_m = first_m + (tile % per_group) % group_m;
    const int tile_n = (tile % per_group) / group_m;
    const int m0 = tile_m * kTileM, n0 = tile_n * kTileN;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int warp_m = (warp >> 2) * kWarpM, warp_n = (warp & 3) * kWarpN;

    TileLoader load_a, load_b;
    load_a.init(a.x, m0, a.m, a.k, smem_base);
    load_b.init(a.w, n0, a.n, a.k, smem_base + kTileBytes);

    float acc[kMmaM][kMmaN][4];
#pragma unroll
    for (int i = 0; i < kMmaM; i++)
#pragma unroll
        for (int j = 0; j < kMmaN; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    // ldmatrix row addresses. A x4: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
    // (rows 0-7, k 8-15), (rows 8-15, k 8-15) = the a0..a3 registers of m16n8k16.
    // B x4 over 16 n: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
    // = b0, b1 of n-tile 0 then b0, b1 of n-tile 1. Lane l gives the address of row l % 8
    // of matrix l / 8.
    const int q = lane >> 3, r8 = lane & 7;
    const int a_row = warp_m + r8 + (q & 1) * 8, a_chunk = q >> 1;
    const int b_row = warp_n + r8 + (q >> 1) * 8, b_chunk = q & 1;

    const int k_tiles = (a.k + kTileK - 1) / kTileK;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < k_tiles) {
            load_a.load(s, s * kStageBytes);
            load_b.load(s, s * kStageBytes);
        }
        cp_async_commit();
    }

    for (int kt = 0; kt < k_tiles; kt++) {
        cp_async_wait<STAGES - 2>(); // this thread's copies of k-tile kt have landed
        __syncthreads();             // everyone's have, and everyone is done with kt - 1
        const int next = kt + STAGES - 1;
        if (next < k_tiles) { // refill the slot that k-tile kt - 1 used
            load_a.load(next, (next % STAGES) * kStageBytes);
            load_b.load(next, (next % STAGES) * kStageBytes);
        }
        cp_async_commit();

        const unsigned tile_a = smem_base + (kt % STAGES) * kStageBytes;
        const unsigned tile_b = tile_a + kTileBytes;
#pragma unroll
        for (int kk = 0; kk < kTileK / 16; kk++) {
            uint32_t af[kMmaM][4], bf[kMmaN / 2][4];
#pragma unroll
            for (int i = 0; i < kMmaM; i++)
                ldmatrix_x4(af[i], tile_a + swizzle(a_row + 16 * i, 2 * kk + a_chunk));
#pragma unroll
            for (int j = 0; j < kMmaN / 2; j++)
                ldmatrix_x4(bf[j], tile_b + swizzle(b_row + 16 * j, 2 * kk + b_chunk));
#pragma unroll
            for (int i = 0; i < kMmaM; i++)
#pragma unroll
                for (int j = 0; j < kMmaN; j++)
                    mma_16816(acc[i][j], af[i], bf[j / 2][(j & 1) * 2], bf[j / 2][(j & 1) * 2 + 1]);
        }
    }
    cp_async_wait<0>(); // nothing is in flight when the CTA exits

    // acc[i][j]: (row g, col 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1) of mma tile (i, j).
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < kMmaM; i++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int m = m0 + warp_m + 16 * i + g + 8 * half;
            if (m >= a.m) continue;
            __nv_bfloat16 *row = a.out + (size_t)m * a.n;
#pragma unroll
            for (int j = 0; j < kMmaN; j++) {
                const int n = n0 + warp_n + 8 * j + 2 * t;
                const float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
                if (a.pair_store && n + 1 < a.n) {
                    *reinterpret_cast<__nv_bfloat162 *>(row + n) = __floats2bfloat162_rn(v0, v1);
                } else {
                    if (n < a.n) row[n] = __float2bfloat16_rn(v0);
                    if (n + 1 < a.n) row[n + 1] = __float2bfloat16_rn(v1);
                }
            }
        }
    }
}

// ---- generic path ----------------------------------------------------------------------------
constexpr int kGenTile = 64, kGenTileK = 16;

// grid: x = ceil(N / 64), y = ceil(M / 64) (the launcher loops over M in pieces for y).
// Thread (ty, tx) of 16 x 16 computes rows ty + 16 i and columns tx + 16 j, i, j < 4.
__global__ void __launch_bounds__(256) gemm_generic_kernel(const __nv_bfloat16 *x,
                                                           const __nv_bfloat16 *w,
                                                           __nv_bfloat16 *out, int m, int n, int k) {
    __shared__ float xs[kGenTileK][kGenTile + 1]; // [k][m]
    __shared__ float ws[kGenTileK][kGenTile + 1]; // [k][n]
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int m0 = blockIdx.y * kGenTile, n0 = blockIdx.x * kGenTile;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < k; k0 += kGenTileK) {
        // 64 rows x 16 k per operand = 4 elements per thread; consecutive threads walk k.
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int e = threadIdx.x + 256 * i;
            const int r = e / kGenTileK, kk = e % kGenTileK;
            const int gk = k0 + kk;
            xs[kk][r] = (m0 + r < m && gk < k) ? __bfloat162float(x[(size_t)(m0 + r) * k + gk]) : 0.0f;
            ws[kk][r] = (n0 + r < n && gk < k) ? __bfloat162float(w[(size_t)(n0 + r) * k + gk]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kGenTileK; kk++) {
            float xv[4], wv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) xv[i] = xs[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) wv[j] = ws[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += xv[i] * wv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = m0 + ty + 16 * i;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int c = n0 + tx + 16 * j;
            if (c < n) out[(size_t)r * n + c] = __float2bfloat16_rn(acc[i][j]);
        }
    }
}

// ---- host side ------------------------------------------------------------------------------

static int launch_generic(const GemmParams *p, const CudaQueue *q) {
    const __nv_bfloat16 *x = (const __nv_bfloat16 *)p->x, *w = (const __nv_bfloat16 *)p->w;
    __nv_bfloat16 *out = (__nv_bfloat16 *)p->out;
    const int piece = 65535 * kGenTile; // grid.y limit
    for (int m0 = 0; m0 < p->m; m0 += piece) {
        const int rows = p->m - m0 < piece ? p->m - m0 : piece;
        const dim3 grid(cuda_blocks((size_t)p->n, kGenTile), cuda_blocks((size_t)rows, kGenTile));
        gemm_generic_kernel<<<grid, 256, 0, q->stream>>>(x + (size_t)m0 * p->k, w,
                                                         out + (size_t)m0 * p->n, rows, p->n, p->k);
        const int rc = cuda_launch_status();
        if (rc != OPS_OK) return rc;
    }
    return OPS_OK;
}

// Opts the kernel in to more than 48 KB of shared memory, once per device (a host-side
// attribute, not a stream operation; done on the first call, normally before any capture).
template <int STAGES>
static bool opt_in_smem(int bytes) {
    static std::atomic<unsigned long long> done_mask{0};
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
        cudaGetLastError(); // not sticky: clear it, or the next op's launch status reports it
        return false;
    }
    const unsigned long long bit = 1ull << (device & 63);
    if (device < 64 && (done_mask.load(std::memory_order_acquire) & bit)) return true;
    if (cudaFuncSetAttribute(gemm_mma_kernel<STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             bytes) != cudaSuccess) {
        cudaGetLastError(); // as above
        return false;
    }
    if (device < 64) done_mask.fetch_or(bit, std::memory_order_release);
    return true;
}

template <int STAGES>
static int launch_fast(const MmaArgs &a, const CudaQueue *q) {
    const int smem = STAGES * kStageBytes;
    if (!opt_in_smem<STAGES>(smem)) return OPS_ERR_DEVICE;
    const unsigned tiles = (unsigned)a.tiles_m * (unsigned)a.tiles_n;
    gemm_mma_kernel<STAGES><<<tiles, kThreads, smem, q->stream>>>(a);
    return cuda_launch_status();
}

} // namespace

int cuda_gemm_mma(const GemmParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->w || !p->out) return OPS_ERR_ARG;
    if (p->w_dtype != DT_F32 && p->w_dtype != DT_F16 && p->w_dtype != DT_BF16) return OPS_ERR_ARG;
    if (p->w_dtype != DT_BF16) return OPS_ERR_UNSUPPORTED;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    if (p->m == 0) return OPS_OK;

    const bool aligned = ((uintptr_t)p->x & 15) == 0 && ((uintptr_t)p->w & 15) == 0;
    const long long tiles_m = ((long long)p->m + kTileM - 1) / kTileM;
    const long long tiles_n = ((long long)p->n + kTileN - 1) / kTileN;
    const bool fits_grid = tiles_m * tiles_n <= 0x7fffffffLL;
    // Three stages need 96 KB, four 128 KB. Take four only where two CTAs of three stages do
    // not fit one SM anyway (A100: 164 KB); H100 runs two CTAs of three stages, Ada one.
    const size_t three = 3 * (size_t)kStageBytes, four = 4 * (size_t)kStageBytes;
    if (p->k % 8 != 0 || !aligned || !fits_grid || q->sm_major < 8 || q->smem_optin < three)
        return launch_generic(p, q);

    MmaArgs a;
    a.x = (const __nv_bfloat16 *)p->x;
    a.w = (const __nv_bfloat16 *)p->w;
    a.out = (__nv_bfloat16 *)p->out;
    a.m = p->m;
    a.n = p->n;
    a.k = p->k;
    a.tiles_m = (int)tiles_m;
    a.tiles_n = (int)tiles_n;
    a.pair_store = p->n % 2 == 0 && ((uintptr_t)p->out & 3) == 0;
    const bool use_four = q->smem_optin >= four && q->smem_optin < 2 * three;
    return use_four ? launch_fast<4>(a, q) : launch_fast<3>(a, q);
}
