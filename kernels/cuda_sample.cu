// Token sampling for ops_cuda: greedy argmax, or temperature / top-k / top-p sampling with
// a per-request seed, exactly as the SampleParams contract in kernels.h orders the tokens.
//
// One block of 1024 threads per row (rows beyond the grid loop over it), V up to 2^28.
//
// Greedy (temperature <= 0 or NaN): one pass, block argmax, lowest id on ties.
//
// Sampling never sorts the vocabulary. Each token gets a 64-bit key that encodes the
// contract's order exactly, so "the j-th token in order" becomes "the j-th largest key":
//     w      = expf((logit - max) / temperature)   in [0, 1]; NaN (NaN logits) -> 0
//     key    = bits(w) << id_bits | (2^id_bits - 1 - id)
// Weights are >= 0, so their f32 bit patterns order like their values (and fit in 30
// bits); the reversed id makes a lower id the larger key on equal weights. Keys are unique.
//
// Sums use fixed point: fx = round(w * 2^31), a u32, summed in u64. Integer sums are exact
// and do not depend on the order threads add them in, so a row's token is deterministic
// (run to run, and whatever the batch). A token with fx = 0 (w < 2^-32) adds nothing and can
// never be drawn; ops_ref's f32 sums lose such tokens to rounding just the same.
//
// With N(c) = #{keys >= c} and S(c) = sum of fx over keys >= c, every step of the contract
// is "the largest key c with F(c) >= target", F = N or S:
//   top_k   (0 < k < #tokens with fx > 0)  c_k = largest c with N(c) >= k;   Z = S(c_k)
//           (a cut among fx = 0 tokens changes nothing and is skipped)
//   top_p   (p < 1)   c_p = largest c with S(c) >= ceil(p * Z)              c_last = S(c_p)
//   draw              c   = largest c with S(c) >= floor(u * c_last) + 1   (c_j > u * c_last)
//   where u = k24 / 2^24 is sample_uniform's value, so u * c_last is exact in integers.
//
// resolve() answers such a query with a radix descent over the key bits:
//   level 0: an 11-bit histogram (counts and fx sums) of the top weight bits, built once per
//            row in the pass that computes the weights (it stores them in q->scratch);
//   level n: a 10-bit histogram of the next key bits, over the keys of the chosen bin only.
// At each level a block-wide scan of the bins from the top finds the bin where F crosses
// the target. As soon as the keys above plus those in that bin fit in shared memory (2048),
// they are gathered and bitonic-sorted there: the buffer is then an exact prefix of the
// order, and this and every later step (which cut inside it) are block scans over it.
// Otherwise, once the bin alone fits, only the bin is gathered and resolved. Typical cost:
// max pass + weight pass + one gather (top-k 50: top_p and the draw then run in shared
// memory); a full-vocabulary draw is the same; a large nucleus adds a pass or two.
//
// Rounding versus ops_ref (the contract allows differences "at the cut-offs"): CUDA's expf
// is within 2 ulp of the C library's, and the sums here are exact fixed point while the CPU
// sums floats in order. Tokens whose weights tie on one backend and not on the other, and
// draws that land within rounding of a cumulative boundary, may pick a neighbouring token.
//
// Non-finite inputs (device memory, unchecked): NaN logits weigh 0 and never win the argmax
// (unless every logit is NaN or -inf, where token 0 is returned); a +inf or all -inf/NaN
// row falls back to the argmax; top_p NaN or >= 1: no limit; top_p <= 0: one token.
#include <math.h>
#include <stdint.h>

#include "cuda_internal.cuh"

namespace {

typedef unsigned long long u64;

constexpr int kThreads = 1024; // the block scans below assume exactly 32 warps
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kL1Bits = 11; // level 0: bits 29..19 of the weight (1/16 octave per bin)
constexpr int kL1Bins = 1 << kL1Bits;
constexpr int kL1Shift = 30 - kL1Bits; // weights in [0, 1] have bit patterns < 2^30
constexpr int kLnBits = 10;           // deeper levels
constexpr int kLnBins = 1 << kLnBits;
constexpr int kCap = 2048;            // sorted key buffer in shared memory
constexpr int kMaxVocab = 1 << 28;
constexpr float kFxScale = 2147483648.0f; // 2^31

enum Metric { COUNT = 0, SUM = 1 };

// Per-bin count and fx sum; the u64 sum is kept as two u32 words (see hist_add).
struct HistLn {
    uint32_t count[kLnBins], sum_lo[kLnBins], sum_hi[kLnBins];
};

struct SampleShared {
    uint32_t l1_count[kL1Bins], l1_lo[kL1Bins], l1_hi[kL1Bins]; // level 0, for the whole row
    union {
        HistLn ln;       // deeper levels
        u64 keys[kCap];  // gathered keys, sorted descending
    } u;
    u64 warp_a[kWarps], warp_b[kWarps]; // block scan partials
    float warp_f[kWarps];
    int warp_i[kWarps];
    u64 result[4];         // broadcast of a block step's answer
    uint32_t gather_count;
};

// What resolve() found: the key, N and S at it, and whether keys[0 .. n_buf) now hold the
// first n_buf tokens of the order.
struct Resolved {
    u64 key, n, s;
    bool prefix;
    int n_buf;
};

struct Row {
    const uint32_t *wbits; // [V] weight bit patterns, in scratch
    int vocab, id_bits;
    u64 id_mask;
};

static_assert(sizeof(SampleShared) <= 48 * 1024, "static shared memory limit");
static_assert(kCap == 2 * kThreads, "scan_buffer gives each thread two keys");

// The 24-bit integer k with sample_uniform(seed, counter) == k * 2^-24 (exact: the draw is
// a 24-bit integer scaled by a power of two).
__device__ __forceinline__ uint32_t sample_uniform_bits24(u64 seed, u64 counter) {
    return (uint32_t)(sample_uniform(seed, counter) * 16777216.0f);
}

__device__ __forceinline__ u64 fx_of_bits(uint32_t wb) {
    return (u64)__float2uint_rn(__uint_as_float(wb) * kFxScale);
}

__device__ __forceinline__ u64 key_of(const Row &r, int id, uint32_t wb) {
    return ((u64)wb << r.id_bits) | (r.id_mask - (u64)id);
}

__device__ __forceinline__ u64 fx_of_key(const Row &r, u64 key) {
    return fx_of_bits((uint32_t)(key >> r.id_bits));
}

// ---- block-wide building blocks (every thread of the block calls them) --------------------

// Exclusive prefix sums over thread index of a and b, and their block totals.
__device__ void block_scan2(SampleShared &sh, u64 a, u64 b, u64 *ex_a, u64 *ex_b, u64 *tot_a,
                            u64 *tot_b) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64 ia = a, ib = b;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const u64 na = __shfl_up_sync(kFull, ia, off), nb = __shfl_up_sync(kFull, ib, off);
        if (lane >= off) {
            ia += na;
            ib += nb;
        }
    }
    if (lane == 31) {
        sh.warp_a[warp] = ia;
        sh.warp_b[warp] = ib;
    }
    __syncthreads();
    u64 wa = sh.warp_a[lane], wb = sh.warp_b[lane]; // every warp scans the 32 warp totals
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const u64 na = __shfl_up_sync(kFull, wa, off), nb = __shfl_up_sync(kFull, wb, off);
        if (lane >= off) {
            wa += na;
            wb += nb;
        }
    }
    const u64 prev_a = __shfl_sync(kFull, wa, (warp + 31) & 31);
    const u64 prev_b = __shfl_sync(kFull, wb, (warp + 31) & 31);
    *tot_a = __shfl_sync(kFull, wa, 31);
    *tot_b = __shfl_sync(kFull, wb, 31);
    *ex_a = (warp ? prev_a : 0) + ia - a;
    *ex_b = (warp ? prev_b : 0) + ib - b;
    __syncthreads(); // warp_a / warp_b are free again
}

// The larger value, the lower id on equal values (a total order: NaN was mapped to -inf).
__device__ __forceinline__ void argmax_step(float *v, int *id, float ov, int oid) {
    if (ov > *v || (ov == *v && oid < *id)) {
        *v = ov;
        *id = oid;
    }
}

__device__ void block_argmax(SampleShared &sh, float *v, int *id) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        argmax_step(v, id, __shfl_xor_sync(kFull, *v, off), __shfl_xor_sync(kFull, *id, off));
    if (lane == 0) {
        sh.warp_f[warp] = *v;
        sh.warp_i[warp] = *id;
    }
    __syncthreads();
    *v = sh.warp_f[lane];
    *id = sh.warp_i[lane];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        argmax_step(v, id, __shfl_xor_sync(kFull, *v, off), __shfl_xor_sync(kFull, *id, off));
    __syncthreads();
}

// Adds s to the u64 sum held as (hi, lo) u32 words: each wrap of lo is seen by exactly the
// atomicAdd that caused it, so the pair is exact whatever the order of the adds.
__device__ __forceinline__ void add_sum(uint32_t *lo, uint32_t *hi, uint32_t bin, u64 s) {
    const uint32_t s_lo = (uint32_t)s;
    uint32_t add_hi = (uint32_t)(s >> 32);
    if (s_lo) {
        const uint32_t old = atomicAdd(&lo[bin], s_lo);
        add_hi += (uint32_t)(old + s_lo) < old ? 1u : 0u;
    }
    if (add_hi) atomicAdd(&hi[bin], add_hi);
}

// Histogram update by a whole warp (warp-uniform call). When all active lanes hit the same
// bin (ties, masked logits, huge temperatures) the warp adds once instead of 32 times.
__device__ __forceinline__ void hist_add(uint32_t *count, uint32_t *lo, uint32_t *hi, bool active,
                                         uint32_t bin, u64 fx) {
    const unsigned act = __ballot_sync(kFull, active);
    if (act == 0) return;
    const int lane = threadIdx.x & 31, leader = __ffs(act) - 1;
    const uint32_t leader_bin = __shfl_sync(kFull, bin, leader);
    if (__all_sync(kFull, !active || bin == leader_bin)) {
        u64 s = active ? fx : 0;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFull, s, off);
        if (lane == leader) {
            atomicAdd(&count[bin], (uint32_t)__popc(act));
            add_sum(lo, hi, bin, s);
        }
    } else if (active) {
        atomicAdd(&count[bin], 1u);
        add_sum(lo, hi, bin, fx);
    }
}

__device__ __forceinline__ u64 bin_sum(const uint32_t *lo, const uint32_t *hi, int bin) {
    return ((u64)hi[bin] << 32) | lo[bin];
}

// Scans bins from the top and finds the bin where F (count or fx sum) reaches target
// (>= 1, relative to the bins' own total). Returns the bin, N and S of the bins above it,
// and the bin's count. If target exceeds the total (never, by construction) the lowest
// bin is taken.
struct Digit {
    int bin;
    u64 above_n, above_s, count;
};

__device__ Digit find_digit(SampleShared &sh, const uint32_t *count, const uint32_t *lo,
                            const uint32_t *hi, int n_bins, Metric metric, u64 target) {
    const int per = (n_bins + kThreads - 1) / kThreads;    // bins per thread: 1 or 2
    const int first = threadIdx.x * per;                   // ranks from the top bin down
    u64 n = 0, s = 0;
    for (int k = 0; k < per; k++) {
        const int rank = first + k;
        if (rank < n_bins) {
            n += count[n_bins - 1 - rank];
            s += bin_sum(lo, hi, n_bins - 1 - rank);
        }
    }
    u64 before_n, before_s, tot_n, tot_s;
    block_scan2(sh, n, s, &before_n, &before_s, &tot_n, &tot_s);
    const u64 before = metric == COUNT ? before_n : before_s;
    const u64 mine = metric == COUNT ? n : s;
    const bool last_owner = first <= n_bins - 1 && n_bins - 1 < first + per;
    if (before < target && (target <= before + mine || last_owner)) {
        for (int k = 0; k < per && first + k < n_bins; k++) {
            const int rank = first + k, bin = n_bins - 1 - rank;
            const u64 bn = count[bin], bs = bin_sum(lo, hi, bin);
            if ((metric == COUNT ? before_n + bn : before_s + bs) >= target || rank == n_bins - 1) {
                sh.result[0] = (u64)bin;
                sh.result[1] = before_n;
                sh.result[2] = before_s;
                sh.result[3] = bn;
                break;
            }
            before_n += bn;
            before_s += bs;
        }
    }
    __syncthreads();
    const Digit d = {(int)sh.result[0], sh.result[1], sh.result[2], sh.result[3]};
    __syncthreads();
    return d;
}

// Histogram of key bits [shift, shift + log2(n_bins)) over the keys in [lo, hi).
__device__ void build_hist(SampleShared &sh, const Row &r, u64 lo, u64 hi, int shift, int n_bins) {
    HistLn &h = sh.u.ln;
    for (int b = threadIdx.x; b < n_bins; b += kThreads) h.count[b] = h.sum_lo[b] = h.sum_hi[b] = 0;
    __syncthreads();
    for (int base = 0; base < r.vocab; base += kThreads) { // warp-uniform trip count
        const int i = base + threadIdx.x;
        const uint32_t wb = i < r.vocab ? r.wbits[i] : 0u;
        const u64 key = key_of(r, i, wb);
        const bool active = i < r.vocab && key >= lo && key < hi;
        hist_add(h.count, h.sum_lo, h.sum_hi, active, active ? (uint32_t)((key - lo) >> shift) : 0u,
                 fx_of_bits(wb));
    }
    __syncthreads();
}

// Gathers the keys in [lo, hi) (at most kCap by construction) into sh.u.keys and sorts
// them descending. Returns how many there are.
__device__ int gather_sorted(SampleShared &sh, const Row &r, u64 lo, u64 hi) {
    u64 *keys = sh.u.keys;
    if (threadIdx.x == 0) sh.gather_count = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    for (int base = 0; base < r.vocab; base += kThreads) { // warp-uniform trip count
        const int i = base + threadIdx.x;
        const u64 key = i < r.vocab ? key_of(r, i, r.wbits[i]) : 0;
        const bool active = i < r.vocab && key >= lo && key < hi;
        const unsigned act = __ballot_sync(kFull, active);
        if (act == 0) continue;
        const int leader = __ffs(act) - 1;
        uint32_t slot = 0;
        if (lane == leader) slot = atomicAdd(&sh.gather_count, (uint32_t)__popc(act));
        slot = __shfl_sync(kFull, slot, leader) + (uint32_t)__popc(act & ((1u << lane) - 1u));
        if (active && slot < (uint32_t)kCap) keys[slot] = key;
    }
    __syncthreads();
    const int n = (int)min(sh.gather_count, (uint32_t)kCap);
    int n_pow2 = 1;
    while (n_pow2 < n) n_pow2 <<= 1;
    for (int i = n + threadIdx.x; i < n_pow2; i += kThreads) keys[i] = 0; // sorts last
    __syncthreads();
    // Bitonic sort, descending: in each (size, stride) step thread i owns the pair
    // (i, i ^ stride) for i < i ^ stride, so the pairs of one step are disjoint.
    for (int size = 2; size <= n_pow2; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n_pow2; i += kThreads) {
                const int j = i ^ stride;
                if (j > i) {
                    const u64 a = keys[i], b = keys[j];
                    if ((i & size) == 0 ? a < b : a > b) {
                        keys[i] = b;
                        keys[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
    return n;
}

// In the sorted buffer keys[0 .. n), finds the first position j whose running F (from 0)
// reaches target (>= 1); returns j and the fx sum of keys[0 .. j]. If target exceeds the
// buffer's total (never, by construction) the last position is taken.
__device__ void scan_buffer(SampleShared &sh, const Row &r, int n, Metric metric, u64 target,
                            int *pos, u64 *sum_incl) {
    const u64 *keys = sh.u.keys;
    if (threadIdx.x == 0) { // fallback answer, overwritten by the finder below
        sh.result[0] = 0;
        sh.result[1] = fx_of_key(r, keys[0]);
    }
    const int first = 2 * threadIdx.x;
    u64 n_mine = 0, s_mine = 0;
    for (int k = 0; k < 2; k++) {
        if (first + k < n) {
            n_mine += 1;
            s_mine += fx_of_key(r, keys[first + k]);
        }
    }
    u64 before_n, before_s, tot_n, tot_s;
    block_scan2(sh, n_mine, s_mine, &before_n, &before_s, &tot_n, &tot_s);
    const u64 before = metric == COUNT ? before_n : before_s;
    const u64 mine = metric == COUNT ? n_mine : s_mine;
    const bool last_owner = first <= n - 1 && n - 1 < first + 2;
    if (before < target && (target <= before + mine || last_owner)) {
        for (int k = 0; k < 2 && first + k < n; k++) {
            const u64 fx = fx_of_key(r, keys[first + k]);
            before_n += 1;
            before_s += fx;
            if ((metric == COUNT ? before_n : before_s) >= target || first + k == n - 1) {
                sh.result[0] = (u64)(first + k);
                sh.result[1] = before_s;
                break;
            }
        }
    }
    __syncthreads();
    *pos = (int)sh.result[0];
    *sum_incl = sh.result[1];
    __syncthreads();
}

// The largest key c with F(c) >= target (1 <= target <= F of the whole row), by radix
// descent; see the header. Gathers a prefix of the order when one fits, else the bin.
__device__ Resolved resolve(SampleShared &sh, const Row &r, Metric metric, u64 target) {
    const int key_bits = 30 + r.id_bits;
    int shift = key_bits - kL1Bits; // level 0 digit = wbits >> kL1Shift
    int n_bins = kL1Bins;
    const uint32_t *count = sh.l1_count, *lo_w = sh.l1_lo, *hi_w = sh.l1_hi;
    u64 range_lo = 0, above_n = 0, above_s = 0;
    for (;;) {
        const u64 above = metric == COUNT ? above_n : above_s;
        const Digit d = find_digit(sh, count, lo_w, hi_w, n_bins, metric,
                                   target > above ? target - above : 1);
        above_n += d.above_n;
        above_s += d.above_s;
        const u64 bin_lo = range_lo + ((u64)d.bin << shift);
        const u64 bin_hi = bin_lo + (1ull << shift);
        Resolved res;
        if (above_n + d.count <= (u64)kCap) {
            // Everything from the top of the order through this bin fits: a sorted prefix.
            const int n = gather_sorted(sh, r, bin_lo, ~0ull);
            int pos;
            u64 s;
            scan_buffer(sh, r, n, metric, target, &pos, &s);
            res.key = sh.u.keys[pos];
            res.n = (u64)pos + 1;
            res.s = s;
            res.prefix = true;
            res.n_buf = n;
            __syncthreads(); // keys[pos] read by all before anyone writes the buffer again
            return res;
        }
        if (d.count <= (u64)kCap || shift == 0) {
            // Only this bin: a window of the order that starts after above_n tokens.
            const int n = gather_sorted(sh, r, bin_lo, bin_hi);
            const u64 above_now = metric == COUNT ? above_n : above_s;
            int pos;
            u64 s;
            scan_buffer(sh, r, n, metric, target > above_now ? target - above_now : 1, &pos, &s);
            res.key = sh.u.keys[pos];
            res.n = above_n + (u64)pos + 1;
            res.s = above_s + s;
            res.prefix = false;
            res.n_buf = 0;
            __syncthreads();
            return res;
        }
        // Descend into the bin: histogram of its next (up to) 10 key bits.
        const int bits = shift < kLnBits ? shift : kLnBits;
        shift -= bits;
        n_bins = 1 << bits;
        range_lo = bin_lo;
        build_hist(sh, r, bin_lo, bin_hi, shift, n_bins);
        count = sh.u.ln.count;
        lo_w = sh.u.ln.sum_lo;
        hi_w = sh.u.ln.sum_hi;
    }
}

// floor(k24 * c / 2^24) exactly, for k24 < 2^24 and c < 2^64.
__device__ __forceinline__ u64 mul_shift24(uint32_t k24, u64 c) {
    const u64 lo = (u64)k24 * c, hi = __umul64hi((u64)k24, c);
    return (hi << 40) | (lo >> 24);
}

// ---- the kernel ---------------------------------------------------------------------------

struct SampleArgs {
    const float *logits;
    const float *temperature;
    const int32_t *top_k;
    const float *top_p;
    const uint64_t *seed;
    const uint64_t *counter;
    int32_t *out;
    int n_rows, vocab;
    uint32_t *scratch;      // [gridDim.x][row_words] weight bits, one row per block
    size_t row_words;
};

__global__ void __launch_bounds__(kThreads, 1) sample_kernel(const SampleArgs a) {
    __shared__ SampleShared sh;
    const int V = a.vocab;
    Row r;
    r.wbits = a.scratch + (size_t)blockIdx.x * a.row_words;
    r.vocab = V;
    r.id_bits = V > 1 ? 32 - __clz((unsigned)(V - 1)) : 0;
    r.id_mask = (1ull << r.id_bits) - 1;
    uint32_t *wbits = a.scratch + (size_t)blockIdx.x * a.row_words;

    for (int row = blockIdx.x; row < a.n_rows; row += gridDim.x) {
        __syncthreads(); // the previous row is done with shared memory and scratch
        const float *logits = a.logits + (size_t)row * (size_t)V;

        // Pass 1: max and argmax (lowest id on ties); NaN counts as -inf.
        float best = -INFINITY;
        int best_id = INT32_MAX;
        for (int i = threadIdx.x; i < V; i += kThreads) {
            const float l = logits[i];
            const float v = l == l ? l : -INFINITY;
            if (v > best || best_id == INT32_MAX) { // ids rise: ties keep the lower one
                best = v;
                best_id = i;
            }
        }
        block_argmax(sh, &best, &best_id);
        const float temperature = a.temperature[row];
        if (!(temperature > 0.0f) || !isfinite(best)) {
            if (threadIdx.x == 0) a.out[row] = best_id;
            continue;
        }

        // Pass 2: weights into scratch, level-0 histogram, #tokens with fx > 0 and total S.
        for (int b = threadIdx.x; b < kL1Bins; b += kThreads) sh.l1_count[b] = sh.l1_lo[b] = sh.l1_hi[b] = 0;
        __syncthreads();
        u64 n_pos = 0, s_total = 0;
        for (int base = 0; base < V; base += kThreads) { // warp-uniform trip count
            const int i = base + threadIdx.x;
            uint32_t wb = 0;
            if (i < V) {
                float w = expf((logits[i] - best) / temperature);
                w = w >= 0.0f ? fminf(w, 1.0f) : 0.0f; // NaN -> 0
                wb = __float_as_uint(w);
                wbits[i] = wb;
            }
            const u64 fx = fx_of_bits(wb);
            n_pos += fx > 0;
            s_total += fx;
            hist_add(sh.l1_count, sh.l1_lo, sh.l1_hi, i < V, wb >> kL1Shift, fx);
        }
        u64 ex_n, ex_s;
        block_scan2(sh, n_pos, s_total, &ex_n, &ex_s, &n_pos, &s_total); // also orders the pass
        __syncthreads();

        bool have_prefix = false; // keys[0 .. n_buf) = the first n_buf tokens of the order
        int n_buf = 0;
        u64 z = s_total; // S over the top-k set

        const int32_t top_k = a.top_k[row];
        if (top_k > 0 && (u64)top_k < n_pos) {
            const Resolved k = resolve(sh, r, COUNT, (u64)top_k);
            z = k.s;
            if (k.prefix) {
                have_prefix = true;
                n_buf = top_k;
            } else if (top_k <= kCap) { // the top-k set fits: later steps run in shared memory
                const int n = gather_sorted(sh, r, k.key, ~0ull);
                have_prefix = true;
                n_buf = min(n, (int)top_k);
            }
        }

        u64 c_last = z; // S over the kept prefix
        const float top_p = a.top_p[row];
        if (top_p < 1.0f) { // NaN: no limit
            const double want = (double)top_p * (double)z;
            u64 target = want > 0.0 ? (u64)ceil(want) : 1;
            target = target < 1 ? 1 : target > z ? z : target;
            if (have_prefix) {
                int pos;
                scan_buffer(sh, r, n_buf, SUM, target, &pos, &c_last);
                n_buf = pos + 1;
            } else {
                const Resolved p = resolve(sh, r, SUM, target);
                c_last = p.s;
                if (p.prefix) {
                    have_prefix = true;
                    n_buf = (int)p.n;
                } else if (p.n <= (u64)kCap) {
                    const int n = gather_sorted(sh, r, p.key, ~0ull);
                    have_prefix = true;
                    n_buf = min(n, (int)p.n);
                }
            }
        }

        // The draw: the first token whose running sum exceeds u * c_last.
        const uint32_t k24 = sample_uniform_bits24(a.seed[row], a.counter[row]);
        const u64 target = mul_shift24(k24, c_last) + 1; // <= c_last since k24 < 2^24
        u64 key;
        if (have_prefix) {
            int pos;
            u64 s;
            scan_buffer(sh, r, n_buf, SUM, target, &pos, &s);
            key = sh.u.keys[pos];
        } else {
            key = resolve(sh, r, SUM, target).key;
        }
        if (threadIdx.x == 0) {
            const u64 id = r.id_mask - (key & r.id_mask);
            a.out[row] = id < (u64)V ? (int32_t)id : V - 1;
        }
    }
}

} // namespace

int cuda_sample(const SampleParams *p, CudaQueue *q) {
    if (!p || !q || !p->logits || !p->temperature || !p->top_k || !p->top_p || !p->seed ||
        !p->counter || !p->out)
        return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->vocab < 1) return OPS_ERR_ARG;
    if (p->n_rows == 0) return OPS_OK;
    if (p->vocab > kMaxVocab) return OPS_ERR_UNSUPPORTED;

    // One row of weight bits per block, 256-byte aligned, in the queue's scratch.
    const size_t row_words = ((size_t)p->vocab + 63) / 64 * 64;
    const size_t slots = q->scratch ? q->scratch_bytes / (row_words * sizeof(uint32_t)) : 0;
    if (slots < 1) return OPS_ERR_UNSUPPORTED;
    const unsigned blocks = (unsigned)((size_t)p->n_rows < slots ? (size_t)p->n_rows : slots);

    SampleArgs a;
    a.logits = p->logits;
    a.temperature = p->temperature;
    a.top_k = p->top_k;
    a.top_p = p->top_p;
    a.seed = p->seed;
    a.counter = p->counter;
    a.out = p->out;
    a.n_rows = p->n_rows;
    a.vocab = p->vocab;
    a.scratch = (uint32_t *)q->scratch;
    a.row_words = row_words;
    sample_kernel<<<blocks, kThreads, 0, q->stream>>>(a);
    return cuda_launch_status();
}
