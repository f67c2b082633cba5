// Large-M (prefill) GEMM for Hopper (sm_90a): out[m, n] = sum_k x[m, k] * w[n, k].
//   x   bf16 [M, K] row-major (activations)
//   w   bf16 [N, K] row-major (Hugging Face Linear weight: [out, in])
//   out bf16 [M, N] row-major, fp32 accumulation, round-to-nearest on store
// Both operands are K-major, which is what wgmma wants for A and B without transposes.
//
// Design
// - Output tiles of BLOCK_M x BN (BLOCK_M = 128, BN = 256 or 128), K consumed 64 bf16
//   (128 bytes) at a time. A persistent grid (one CTA per SM, 1 CTA/SM by shared memory)
//   walks the tiles round-robin in a grouped order (GROUP_M tile rows at a time) so the CTAs
//   running at once share x rows and w rows in L2.
// - 384 threads = 3 warpgroups, specialised:
//     warpgroup 0, the producer: gives registers back (setmaxnreg.dec) and one thread issues
//       the TMA loads (cp.async.bulk.tensor) of each K block of x (128 x 64) and w (BN x 64)
//       into a STAGES-deep ring of shared-memory stages;
//     warpgroups 1 and 2, the consumers: take registers (setmaxnreg.inc); consumer c owns
//       rows [64c, 64c + 64) of the tile and issues wgmma.mma_async m64nBNk16 (4 per K block)
//       with fp32 accumulators in registers (BN/2 floats per thread), then converts to bf16
//       and stores straight to global memory with bounds checks.
// - Each stage has two mbarriers. full[s]: count 1, the producer's arrive.expect_tx plus the
//   TMA's complete_tx bytes complete it. empty[s]: count 8, lane 0 of each of the 8 consumer
//   warps arrives once the wgmma that read the stage has completed. Both roles walk the same
//   sequence of (tile, K block) pairs, so one running (stage, phase) pair per role keeps them
//   in step across tiles (see the parity notes at mbar_wait).
// - TMA uses 128-byte swizzle; the wgmma shared-memory descriptors use the same swizzle mode
//   (see smem_desc_sw128), so tensor cores read conflict-free without any data movement by
//   threads. Out-of-bounds rows (M, N tails) and columns (the K tail) are zero-filled by the
//   TMA, so any K % 8 == 0 works; the epilogue masks rows >= M and columns >= N.
//
// Dispatch (cuda_gemm_wgmma): bf16 weights, an sm_90 device, K % 8 == 0 (TMA needs 16-byte
// row strides) and 16-byte aligned x and w; anything else returns OPS_ERR_UNSUPPORTED and
// the caller falls back to another kernel. The tensor maps are encoded on every call
// (cuTensorMapEncodeTiled is a host-only call of about a microsecond), fetched through
// cudaGetDriverEntryPointByVersion so libcuda need not be linked.
//
// The device code is compiled only for sm_90a (wgmma and setmaxnreg exist nowhere else);
// for the other targets the kernel body is empty and the launcher never launches it there.
#include <cuda.h>
#include <cudaTypedefs.h>

#include "cuda_internal.cuh"

#ifdef MYRMEX_HAVE_SM90A // CMake: 90a is in MYRMEX_CUDA_ARCHS
constexpr bool kHaveSm90a = true;
#else
constexpr bool kHaveSm90a = false;
#endif

#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_DEVICE 1
#else
#define WGMMA_DEVICE 0
#endif

enum {
    WG_BLOCK_M = 128,       // tile rows: 2 consumer warpgroups x 64 rows (wgmma M = 64)
    WG_BLOCK_K = 64,        // bf16 per K block: 128 bytes, one 128B-swizzle row
    WG_THREADS = 384,       // producer warpgroup + 2 consumer warpgroups
    WG_CONSUMER_WARPS = 8,  // arrivals that free a stage
    WG_PRODUCER_REGS = 40,  // 128 x (168 - 40) registers freed ...
    WG_CONSUMER_REGS = 232, // ... = 256 x (232 - 168) taken; 168 = 65536 / 384 rounded down to 8
    WG_GROUP_M = 8,         // tile rows per group in the L2-friendly tile order
    WG_A_BYTES = WG_BLOCK_M * WG_BLOCK_K * 2, // 16 KiB
};

// Shared memory of one configuration. Every stage and every A/B sub-tile starts on a 1024-byte
// boundary: the 128B swizzle pattern repeats every 8 rows x 128 bytes = 1024 bytes, and both
// the TMA and the wgmma descriptors (base offset 0) assume the pattern starts there.
template <int BN, int STAGES> struct WgTile {
    static constexpr int B_BYTES = BN * WG_BLOCK_K * 2;           // 32 KiB or 16 KiB
    static constexpr int STAGE_BYTES = WG_A_BYTES + B_BYTES;      // also the TMA bytes per stage
    static constexpr int BARRIER_BYTES = 2 * STAGES * 8;          // full[] then empty[]
    static constexpr int SMEM_BYTES = 1024 + STAGES * STAGE_BYTES + BARRIER_BYTES; // + align slack
    static_assert(STAGE_BYTES % 1024 == 0, "stages must stay 1024-byte aligned");
    static_assert(BN == 128 || BN == 256, "wgmma N used here");
};

// ---- device helpers (sm_90a only) ----------------------------------------------------------
#if WGMMA_DEVICE

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

static __device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

// Makes the barrier initialisations visible to the other threads and to the async proxy
// (the TMA unit signals complete_tx on them) before anyone uses them.
static __device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// Arrives once and adds `bytes` to the transaction count the current phase waits for.
static __device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

// Waits until the phase of parity `parity` has completed. A barrier starts in phase 0
// (incomplete); try_wait.parity(0) blocks until phase 0 completes, while try_wait.parity(1)
// succeeds at once (it asks about the phase before phase 0, which counts as complete).
// Hence: consumers wait full[s] with parity = phase (round 0 -> 0: wait for the first load);
// the producer waits empty[s] with parity = phase ^ 1 (round 0 -> 1: the stage starts free;
// round r >= 1 -> waits for the consumers' (r-1)-th release, which completed phase r-1).
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n\t.reg .pred p;\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

static __device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// TMA: copies the box at element coordinates (inner = k, outer = row) of `map` into shared
// memory at dst (128B-swizzled, as encoded in the map) and signals `bar` with its bytes.
// Parts of the box outside the tensor arrive as zeros and still count as bytes.
static __device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map,
                                                   uint32_t bar, int inner, int outer) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(bar)
                 : "memory");
}

template <int REGS> static __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(REGS));
}
template <int REGS> static __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
}

// wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"), 64 bits:
//   bits  0-13  start address >> 4 (shared-window byte address; < 256 KiB fits 14 bits)
//   bits 16-29  leading dimension byte offset >> 4 (LBO)
//   bits 32-45  stride dimension byte offset >> 4 (SBO)
//   bits 49-51  matrix base offset (0: the swizzle pattern starts at a 1024-byte boundary)
//   bits 62-63  swizzle mode: 0 none, 1 = 128B, 2 = 64B, 3 = 32B
// Our tiles (both A = x rows and B = w rows) are K-major: row r of the tile is 64 bf16 =
// 128 bytes at byte r * 128, and the TMA's 128B swizzle stores its 16-byte chunk c at chunk
// position c ^ (r % 8). A "core matrix" is 8 rows x 16 bytes. With a swizzled K-major layout
// one wgmma's K extent (16 bf16 = 32 bytes) lies inside one 128-byte swizzle row, so LBO is
// not used (set to 1, i.e. 16 bytes, by convention); SBO is the distance between consecutive
// groups of 8 rows = 8 * 128 = 1024 bytes. The hardware applies the XOR swizzle to the
// address bits it computes, so the k-th 16-wide K slice of the block is addressed by adding
// k * 32 bytes to the start address (k * 2 in the >> 4 field) with everything else unchanged.
static __device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4)  // start address
           | ((uint64_t)(16 >> 4) << 16)       // LBO: unused for swizzled K-major
           | ((uint64_t)(1024 >> 4) << 32)     // SBO: 8 rows x 128 bytes
           | ((uint64_t)1 << 62);              // 128-byte swizzle
}

static __device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
static __device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N> static __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// Pins accumulator registers at this point of the program: the compiler may not move a read
// or write of acc across it (the wgmma writes them asynchronously, behind its back).
template <int N> static __device__ __forceinline__ void fence_acc(float (&acc)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(acc[i])::"memory");
}

#define WG_ACC8(d, i)                                                                          \
    "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]),  \
        "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define WG_ACC32(d, i) WG_ACC8(d, i), WG_ACC8(d, (i) + 8), WG_ACC8(d, (i) + 16), WG_ACC8(d, (i) + 24)

// acc[64 x BN slice] (+)= A[64 x 16] * B[BN x 16]^T, both from shared memory via descriptors.
// accumulate == 0 overwrites acc (scale-d = false), which starts each tile without zeroing.
// The trailing immediates: scale-a = 1, scale-b = 1, trans-a = 0, trans-b = 0 (K-major).
static __device__ __forceinline__ void wgmma_n256(float (&d)[128], uint64_t a, uint64_t b,
                                                  int accumulate) {
    asm volatile(
        "{\n\t.reg .pred p;\n\t"
        "setp.ne.b32 p, %130, 0;\n\t"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, "
        "%111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, "
        "%125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n\t}"
        : WG_ACC32(d, 0), WG_ACC32(d, 32), WG_ACC32(d, 64), WG_ACC32(d, 96)
        : "l"(a), "l"(b), "r"(accumulate));
}

static __device__ __forceinline__ void wgmma_n128(float (&d)[64], uint64_t a, uint64_t b,
                                                  int accumulate) {
    asm volatile(
        "{\n\t.reg .pred p;\n\t"
        "setp.ne.b32 p, %66, 0;\n\t"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n\t}"
        : WG_ACC32(d, 0), WG_ACC32(d, 32)
        : "l"(a), "l"(b), "r"(accumulate));
}

template <int BN>
static __device__ __forceinline__ void wgmma_bn(float (&d)[BN / 2], uint64_t a, uint64_t b,
                                                int accumulate) {
    if constexpr (BN == 256) wgmma_n256(d, a, b, accumulate);
    else wgmma_n128(d, a, b, accumulate);
}

// Tile index -> (tile row, tile column) in groups of WG_GROUP_M tile rows: consecutive tiles
// walk down a group's rows first, then across its columns, so the ~132 tiles in flight at
// once cover a compact block of the output (few distinct x and w rows -> L2 hits).
static __device__ __forceinline__ void tile_coords(int tile, int tiles_m, int tiles_n,
                                                   int *tm, int *tn) {
    const int group_tiles = WG_GROUP_M * tiles_n;
    const int group = tile / group_tiles;
    const int first_m = group * WG_GROUP_M;
    const int rows = min(tiles_m - first_m, (int)WG_GROUP_M); // >= 1: the last group may be short
    const int in_group = tile - group * group_tiles;           // < rows * tiles_n
    *tm = first_m + in_group % rows;
    *tn = in_group / rows;
}

// Stores out[row, col] and out[row, col + 1] (those inside [M, N]).
static __device__ __forceinline__ void store_pair(__nv_bfloat16 *out, int m, int n, int row,
                                                  int col, float v0, float v1, int pair_stores) {
    if (row >= m || col >= n) return;
    __nv_bfloat16 *dst = out + (size_t)row * (size_t)n + col;
    if (pair_stores && col + 1 < n) { // n even, out 4-byte aligned, col even: 4-byte aligned
        *reinterpret_cast<__nv_bfloat162 *>(dst) = __floats2bfloat162_rn(v0, v1);
    } else {
        dst[0] = __float2bfloat16_rn(v0);
        if (col + 1 < n) dst[1] = __float2bfloat16_rn(v1);
    }
}

#endif // WGMMA_DEVICE

// ---- the kernel ----------------------------------------------------------------------------
// x_map: x as a 2-D tensor {K, M} (inner first), box {64, 128}; w_map: w as {K, N}, box
// {64, BN}; both bf16, 128B swizzle, zero fill out of bounds. Grid: min(tiles, SMs) CTAs of
// WG_THREADS threads with WgTile<BN, STAGES>::SMEM_BYTES of dynamic shared memory.
template <int BN, int STAGES>
__global__ void __launch_bounds__(WG_THREADS, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap x_map,
                      const __grid_constant__ CUtensorMap w_map, __nv_bfloat16 *__restrict__ out,
                      int m, int n, int k, int pair_stores) {
#if WGMMA_DEVICE
    using Tile = WgTile<BN, STAGES>;
    extern __shared__ uint8_t smem_raw[];
    // Shared-window addresses: stage s holds A (x rows) at base + s * STAGE_BYTES and
    // B (w rows) right after it; the barriers follow the last stage.
    const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
    const uint32_t full_bar = base + STAGES * Tile::STAGE_BYTES; // STAGES x 8 bytes
    const uint32_t empty_bar = full_bar + STAGES * 8;             // STAGES x 8 bytes

    const int tiles_m = (m + WG_BLOCK_M - 1) / WG_BLOCK_M;
    const int tiles_n = (n + BN - 1) / BN;
    const int num_tiles = tiles_m * tiles_n;
    const int num_kb = (k + WG_BLOCK_K - 1) / WG_BLOCK_K; // >= 1; the tail is zero-filled

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full_bar + 8 * s, 1);
            mbar_init(empty_bar + 8 * s, WG_CONSUMER_WARPS);
        }
        mbar_init_fence();
    }
    __syncthreads(); // the last CTA-wide barrier: the roles never meet again except via mbarriers

    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        // ---- producer: one thread streams (tile, K block) pairs into the ring ----
        setmaxnreg_dec<WG_PRODUCER_REGS>();
        if (threadIdx.x == 0) {
            tma_prefetch_map(&x_map);
            tma_prefetch_map(&w_map);
            int stage = 0;
            uint32_t phase = 0; // flips each time stage wraps to 0
            for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
                int tm, tn;
                tile_coords(tile, tiles_m, tiles_n, &tm, &tn);
                for (int kb = 0; kb < num_kb; kb++) {
                    mbar_wait(empty_bar + 8 * stage, phase ^ 1); // consumers freed this stage
                    const uint32_t a_dst = base + stage * Tile::STAGE_BYTES;
                    const uint32_t bar = full_bar + 8 * stage;
                    mbar_arrive_expect_tx(bar, Tile::STAGE_BYTES);
                    tma_load_2d(a_dst, &x_map, bar, kb * WG_BLOCK_K, tm * WG_BLOCK_M);
                    tma_load_2d(a_dst + WG_A_BYTES, &w_map, bar, kb * WG_BLOCK_K, tn * BN);
                    if (++stage == STAGES) {
                        stage = 0;
                        phase ^= 1;
                    }
                }
            }
        }
    } else {
        // ---- consumers: warpgroup 1 -> tile rows 0..63, warpgroup 2 -> rows 64..127 ----
        setmaxnreg_inc<WG_CONSUMER_REGS>();
        const int consumer = warpgroup - 1;
        const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
        float acc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++) acc[i] = 0.0f; // never read (scale-d = 0), but defined
        int stage = 0;
        uint32_t phase = 0;
        for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
            int tm, tn;
            tile_coords(tile, tiles_m, tiles_n, &tm, &tn);
            int prev_stage = 0;
            for (int kb = 0; kb < num_kb; kb++) {
                mbar_wait(full_bar + 8 * stage, phase); // TMA bytes of this stage have landed
                __syncwarp(); // wgmma.*.sync.aligned wants the warp converged
                const uint32_t a_tile = base + stage * Tile::STAGE_BYTES + consumer * (64 * 128);
                const uint32_t b_tile = base + stage * Tile::STAGE_BYTES + WG_A_BYTES;
                const uint64_t a_desc = smem_desc_sw128(a_tile), b_desc = smem_desc_sw128(b_tile);
                wgmma_fence();
#pragma unroll
                for (int ks = 0; ks < WG_BLOCK_K / 16; ks++) // +32 bytes per 16-wide K slice
                    wgmma_bn<BN>(acc, a_desc + 2 * ks, b_desc + 2 * ks, (kb | ks) != 0);
                wgmma_commit();
                // Keep this K block's wgmma in flight; wait for the previous one, whose stage
                // can then go back to the producer (one arrival per warp: after its own
                // wait_group the warp no longer reads the stage).
                wgmma_wait<1>();
                if (kb > 0 && lane == 0) mbar_arrive(empty_bar + 8 * prev_stage);
                __syncwarp();
                prev_stage = stage;
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            }
            wgmma_wait<0>();
            fence_acc(acc);
            if (lane == 0) mbar_arrive(empty_bar + 8 * prev_stage);
            __syncwarp();

            // Epilogue. Accumulator layout of wgmma m64nNk16 with f32 D (PTX ISA, "Matrix
            // fragments for wgmma .m64nNk16", D): warp w of the warpgroup owns rows
            // 16w .. 16w + 15 of the 64-row slice; within it, like mma.m16n8, lane l holds for
            // each 8-column chunk j (j < N/8) four values:
            //   acc[4j + 0], acc[4j + 1] -> row 16w + l/4,     cols 8j + 2(l%4) + {0, 1}
            //   acc[4j + 2], acc[4j + 3] -> row 16w + l/4 + 8, cols 8j + 2(l%4) + {0, 1}
            // i.e. acc[i]: row = 16w + l/4 + 8 * ((i / 2) % 2), col = 8 (i / 4) + 2 (l % 4) + i % 2.
            const int row0 = tm * WG_BLOCK_M + consumer * 64 + warp * 16 + lane / 4;
            const int col0 = tn * BN + 2 * (lane % 4);
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                store_pair(out, m, n, row0, col0 + 8 * j, acc[4 * j], acc[4 * j + 1],
                           pair_stores);
                store_pair(out, m, n, row0 + 8, col0 + 8 * j, acc[4 * j + 2], acc[4 * j + 3],
                           pair_stores);
            }
        }
    }
#else
    (void)x_map, (void)w_map, (void)out, (void)m, (void)n, (void)k, (void)pair_stores;
#endif
}

// ---- host side -----------------------------------------------------------------------------
typedef PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncodeFn;

static TensorMapEncodeFn tensor_map_encoder_load(void) {
    void *fn = NULL;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    // The v12000 ABI of the symbol, which PFN_cuTensorMapEncodeTiled_v12000 describes.
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                             cudaEnableDefault, &found);
#else
    const cudaError_t err =
        cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess || found != cudaDriverEntryPointSuccess || !fn) {
        cudaGetLastError(); // clear this call's error; it is not the caller's launch error
        return NULL;
    }
    return (TensorMapEncodeFn)fn;
}

// The driver's cuTensorMapEncodeTiled, looked up once (thread-safe static init); NULL if the
// driver has none.
static TensorMapEncodeFn tensor_map_encoder(void) {
    static const TensorMapEncodeFn fn = tensor_map_encoder_load();
    return fn;
}

// A bf16 [rows, k] row-major matrix as a TMA map with boxes of box_rows x 64 elements,
// 128B swizzle, zeros outside the matrix. Returns false if the driver rejects it.
static bool encode_kmajor(TensorMapEncodeFn encode, CUtensorMap *map, const void *ptr,
                          int rows, int k, int box_rows) {
    const cuuint64_t dims[2] = {(cuuint64_t)k, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)k * 2}; // bytes between rows; % 16 == 0
    const cuuint32_t box[2] = {WG_BLOCK_K, (cuuint32_t)box_rows};
    const cuuint32_t elem_strides[2] = {1, 1};
    return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(ptr), dims,
                  strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                  CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int BN, int STAGES>
static int gemm_wgmma_launch(const GemmParams *p, CudaQueue *q, TensorMapEncodeFn encode) {
    using Tile = WgTile<BN, STAGES>;
    if ((size_t)Tile::SMEM_BYTES > q->smem_optin) return OPS_ERR_UNSUPPORTED;
    CUtensorMap x_map, w_map;
    if (!encode_kmajor(encode, &x_map, p->x, p->m, p->k, WG_BLOCK_M) ||
        !encode_kmajor(encode, &w_map, p->w, p->n, p->k, BN))
        return OPS_ERR_UNSUPPORTED;

    void (*kernel)(CUtensorMap, CUtensorMap, __nv_bfloat16 *, int, int, int, int) =
        gemm_wgmma_kernel<BN, STAGES>;
    // Per call rather than once: the attribute is per device, and a process may drive several.
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             Tile::SMEM_BYTES) != cudaSuccess) {
        cudaGetLastError(); // this configuration cannot run here: let the caller fall back
        return OPS_ERR_UNSUPPORTED;
    }
    const long long tiles = (long long)cuda_blocks((size_t)p->m, WG_BLOCK_M) *
                            (long long)cuda_blocks((size_t)p->n, BN);
    if (tiles > INT32_MAX / 2) return OPS_ERR_UNSUPPORTED; // tile indices (+ grid) are int
    const int sms = q->num_sms > 0 ? q->num_sms : 1;
    const unsigned grid = (unsigned)(tiles < sms ? tiles : sms);
    const int pair_stores = (p->n % 2 == 0) && ((uintptr_t)p->out % 4 == 0);
    gemm_wgmma_kernel<BN, STAGES><<<grid, WG_THREADS, Tile::SMEM_BYTES, q->stream>>>(
        x_map, w_map, (__nv_bfloat16 *)p->out, p->m, p->n, p->k, pair_stores);
    return cuda_launch_status();
}

// 128 x 256 tiles do the most math per byte of shared memory read; 128 x 128 tiles help when
// the wider ones leave many SMs idle in the last wave (or pad N a lot). Score = useful share
// of the SM-slots the grid occupies, times the tile shape's relative efficiency (a guess:
// 128 x 128 reaches ~85% of 128 x 256's rate; retune on the GPU).
static int pick_block_n(int m, int n, int num_sms) {
    const double rel[2] = {1.0, 0.85};
    const int bns[2] = {256, 128};
    int best = 256;
    double best_score = -1.0;
    for (int i = 0; i < 2; i++) {
        const double tiles_m = (double)cuda_blocks((size_t)m, WG_BLOCK_M);
        const double tiles_n = (double)cuda_blocks((size_t)n, (unsigned)bns[i]);
        const double tiles = tiles_m * tiles_n;
        const double waves = (double)cuda_blocks((size_t)tiles, (unsigned)num_sms);
        const double useful = (double)m * n / (tiles * WG_BLOCK_M * bns[i]); // padding waste
        const double score = tiles / (waves * num_sms) * useful * rel[i];
        if (score > best_score + 1e-9) {
            best_score = score;
            best = bns[i];
        }
    }
    return best;
}

int cuda_gemm_wgmma(const GemmParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->w || !p->out) return OPS_ERR_ARG;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    if (p->w_dtype != DT_BF16) return OPS_ERR_UNSUPPORTED;
    // sm_90a code only; a build without it (e.g. only compute_90 PTX) has an empty kernel.
    if (!kHaveSm90a || q->sm_major != 9 || q->sm_minor != 0) return OPS_ERR_UNSUPPORTED;
    if (p->m == 0) return OPS_OK;
    // TMA: 16-byte aligned bases and row strides (K * 2 bytes).
    if (p->k % 8 != 0 || (uintptr_t)p->x % 16 != 0 || (uintptr_t)p->w % 16 != 0)
        return OPS_ERR_UNSUPPORTED;
    const TensorMapEncodeFn encode = tensor_map_encoder();
    if (!encode) return OPS_ERR_UNSUPPORTED;
    const int sms = q->num_sms > 0 ? q->num_sms : 1;
    if (pick_block_n(p->m, p->n, sms) == 256) return gemm_wgmma_launch<256, 4>(p, q, encode);
    return gemm_wgmma_launch<128, 6>(p, q, encode);
}
