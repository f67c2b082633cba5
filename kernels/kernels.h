// The backend boundary between the runtime and the kernels.
//
// Plain C: one params struct per op family (pointers, sizes, each commented with its shape)
// and an `Ops` table of function pointers. `ops_ref` implements every op in simple C with
// fp32 accumulation; `ops_cuda` (kernels/*.cu) implements the same ops on the GPU. The model
// forward calls only what is declared here and cannot tell which backend it got.
//
// Conventions
// - "act" tensors hold activations in the backend's `Ops.act_dtype` (f32 for ops_ref,
//   bf16 for ops_cuda). Weights carry their own DType. Logits are always f32.
// - All tensors are row-major and contiguous unless a stride is given. Shapes use
//   T = tokens this step, S = sequences, R = rows that need logits, D = hidden size,
//   I = intermediate size, V = vocab, Hq/Hkv = query/KV heads, Dh = head dim.
// - The paged KV cache of one layer: K,V[num_blocks][block_size][Hkv][Dh] (act dtype).
//   Token slot s lives in block s / block_size at offset s % block_size.
// - Every op checks its arguments and returns OPS_OK or an OpsStatus; it never aborts.
//   Arguments in backend memory (token ids, positions, block tables) are checked only where
//   that memory is host memory; a device backend clamps or skips what is out of range so a
//   bad id can never write outside a buffer. `queue` comes from Ops.queue_create.
#ifndef MYRMEX_KERNELS_H
#define MYRMEX_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

typedef enum OpsStatus {
    OPS_OK = 0,
    OPS_ERR_ARG = 1,         // a null pointer, a negative size, an index out of range
    OPS_ERR_UNSUPPORTED = 2, // a shape or dtype this backend does not implement
    OPS_ERR_DEVICE = 3,      // the device reported an error
    OPS_ERR_NOMEM = 4,
} OpsStatus;

// out[t, :] = table[tokens[t], :]
typedef struct EmbeddingParams {
    const int32_t *tokens; // [T], each in [0, V)
    const void *table;     // [V, D] weight
    DType table_dtype;
    void *out;             // [T, D] act
    int n_tokens, dim, vocab;
} EmbeddingParams;

// RMS norm with an optional fused residual add (eps inside the square root):
//   residual != NULL:  residual[t] += x[t];  out[t] = residual[t] / rms(residual[t]) * weight
//   residual == NULL:  out[t] = x[t] / rms(x[t]) * weight
// out may alias x.
typedef struct RmsNormParams {
    const void *x;      // [T, D] act
    void *residual;     // [T, D] act, updated in place; or NULL
    const void *weight; // [D] weight
    DType weight_dtype;
    void *out;          // [T, D] act
    int n_rows, dim;
    float eps;
} RmsNormParams;

// out[m, n] = sum_k x[m, k] * w[n, k]   (w in the Hugging Face Linear layout [out, in])
typedef struct GemmParams {
    const void *x; // [M, K] act
    const void *w; // [N, K] weight
    DType w_dtype;
    void *out;     // [M, N] act
    int m, n, k;
} GemmParams;

// Rotary embedding and the K/V page write, fused: reads the fused QKV projection of each
// token, writes its rotated q heads to q_out, and its rotated k heads and its v heads into
// the token's cache slot (a negative slot skips the write; two tokens mapped to the same
// slot leave either one). Llama "rotate half" layout: element i pairs with i + Dh/2; for
// position p and pair i, angle = p * inv_freq[i] (any rope_scaling is already folded into
// inv_freq by the runtime).
typedef struct RopeKvWriteParams {
    const void *qkv;              // [T, (Hq + 2*Hkv) * Dh] act: q heads, then k heads, then v heads
    void *q_out;                  // [T, Hq, Dh] act
    void *k_cache, *v_cache;      // [num_blocks, block_size, Hkv, Dh] act
    const int32_t *positions;     // [T], >= 0
    const int64_t *slot_mapping;  // [T], in [0, num_blocks * block_size) or < 0
    const float *inv_freq;        // [Dh / 2] f32
    int n_tokens, n_q_heads, n_kv_heads, head_dim, block_size, num_blocks;
} RopeKvWriteParams;

// Causal attention over the paged KV cache for a flattened variable-length batch.
// Sequence s owns query rows q_start[s] .. q_start[s+1]-1, which are the LAST
// (q_start[s+1] - q_start[s]) tokens of its context of ctx_len[s] tokens; its context
// lives in blocks kv_indices[kv_indptr[s] .. kv_indptr[s+1]-1], in order.
// Query head h reads KV head h / (Hq / Hkv) (GQA). A query at position p sees keys at
// positions j <= p, and with a sliding window W > 0 only those with p - j < W.
typedef struct AttentionParams {
    const void *q;                  // [T, Hq, Dh] act
    const void *k_cache, *v_cache;  // [num_blocks, block_size, Hkv, Dh] act
    void *out;                      // [T, Hq, Dh] act
    const int32_t *q_start;         // [S + 1], q_start[0] = 0, q_start[S] = T
    const int32_t *ctx_len;         // [S], >= its query count
    const int32_t *kv_indptr;       // [S + 1]
    const int32_t *kv_indices;      // [kv_indptr[S]] block ids in [0, num_blocks)
    int n_seqs, n_tokens, n_q_heads, n_kv_heads, head_dim, block_size, num_blocks;
    int sliding_window;             // 0 = none
    float scale;                    // usually 1 / sqrt(Dh)
    // Host-side upper bounds for sizing the launch (the arrays above may live in device
    // memory): every query count q_start[s+1] - q_start[s] <= max_q_len and every
    // ctx_len[s] <= max_ctx_len. A captured graph passes its bucket's bounds.
    int max_q_len, max_ctx_len;
} AttentionParams;

// out[t, i] = silu(gate[t, i]) * up[t, i], silu(x) = x / (1 + exp(-x)).
// gate and up rows are in_stride elements apart, so one [T, 2I] gate|up buffer works too.
typedef struct SiluMulParams {
    const void *gate; // [T, in_stride] act, first I columns used
    const void *up;   // [T, in_stride] act, first I columns used
    void *out;        // [T, I] act
    int n_rows, dim, in_stride;
} SiluMulParams;

// logits[r, :] = hidden[rows[r], :] . w^T, only for the R rows that need them.
typedef struct LmHeadParams {
    const void *hidden;   // [T, D] act (already normalised)
    const int32_t *rows;  // [R], each in [0, T)
    const void *w;        // [V, D] weight
    DType w_dtype;
    float *logits;        // [R, V] f32
    int n_rows, n_tokens, dim, vocab;
} LmHeadParams;

// One token per row. temperature <= 0: greedy, the argmax (lowest id on ties). Otherwise,
// with weights e_i = exp((logit_i - max) / temperature) and tokens ordered by decreasing
// weight (lower id first on ties): keep the first top_k tokens (all when top_k <= 0 or
// >= V), then the shortest prefix of those whose weight sum reaches top_p times theirs
// (at least one token); with c_j the running sum of that prefix's weights and
// u = sample_uniform(seed[r], counter[r]), the token is the first j with c_j > u * c_last.
// Backends agree exactly up to rounding at the cut-offs.
typedef struct SampleParams {
    const float *logits;       // [R, V] f32
    const float *temperature;  // [R]
    const int32_t *top_k;      // [R], <= 0 or >= V: no limit
    const float *top_p;        // [R], in (0, 1]; 1: no limit
    const uint64_t *seed;      // [R] the request's seed
    const uint64_t *counter;   // [R] the index of the token being drawn within the request
    int32_t *out;              // [R] token ids
    int n_rows, vocab;
} SampleParams;

#ifdef __CUDACC__
#define MX_HOST_DEVICE __host__ __device__ // callable from CUDA kernels too
#else
#define MX_HOST_DEVICE
#endif

// The uniform draw shared by every backend's sample op: splitmix64 of the seed and the
// counter, top 24 bits -> [0, 1). Pure, so a request's tokens do not depend on batching.
static inline MX_HOST_DEVICE float sample_uniform(uint64_t seed, uint64_t counter) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + counter * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// The sum behind a tensor-parallel all-reduce whose ranks share one address space (threads on
// the CPU, virtual ranks on one GPU): y = in[0] + in[1] + ... + in[n_in - 1], added in that
// order in f32 and rounded once to dtype, written to every out[0..n_out). Each element is
// read from all inputs before it is written, so an out may be one of the ins.
#define OPS_MAX_RANKS 8
typedef struct SumParams {
    const void *in[OPS_MAX_RANKS]; // [count] act each
    void *out[OPS_MAX_RANKS];      // [count] act each
    int n_in, n_out;
    size_t count;
    DType dtype;
} SumParams;

typedef struct Ops {
    const char *name;
    DType act_dtype;  // dtype of activations and KV pages
    bool host_memory; // true: backend memory is host memory, host pointers usable directly

    void *(*alloc)(size_t bytes); // backend memory, NULL on failure
    void (*free)(void *p);
    void *(*host_alloc)(size_t bytes); // host memory the backend copies from fastest (pinned)
    void (*host_free)(void *p);
    // A queue: the order ops run in and the state they share (for CUDA a stream, a cuBLAS
    // handle and scratch memory). Every op takes one; ops on one queue run in call order.
    // NULL on failure. ops_ref's queue is a dummy that carries no state.
    void *(*queue_create)(void);
    void (*queue_destroy)(void *queue);
    // Copies in queue order. upload's src may be reused as soon as it returns, except memory
    // from host_alloc, which must stay unchanged until the queue's next sync; download's
    // dst is complete after the next sync.
    int (*upload)(void *dst, const void *src, size_t bytes, void *queue);   // host -> backend
    int (*download)(void *dst, const void *src, size_t bytes, void *queue); // backend -> host
    int (*sync)(void *queue);

    int (*embedding)(const EmbeddingParams *p, void *queue);
    int (*rmsnorm)(const RmsNormParams *p, void *queue);
    int (*gemm)(const GemmParams *p, void *queue);
    int (*rope_kv_write)(const RopeKvWriteParams *p, void *queue);
    int (*attention)(const AttentionParams *p, void *queue);
    int (*silu_mul)(const SiluMulParams *p, void *queue);
    int (*lm_head)(const LmHeadParams *p, void *queue);
    int (*sample)(const SampleParams *p, void *queue);
    // dst[i] = a value from a fixed hash of (seed, i), uniform in [lo, hi] (lo == hi: a
    // constant), stored in dtype: dummy weights made where they live, for benchmarks.
    int (*fill)(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, void *queue);
    int (*sum)(const SumParams *p, void *queue);
    // rows x width bytes from src (rows src_pitch bytes apart) to dst (dst_pitch apart), both
    // in backend memory and not overlapping: a rank's vocab slice of the logits into the
    // full [R, V] rows.
    int (*copy_2d)(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                   void *queue);

    // Optional (NULL when the backend has none): record the ops issued on a queue between
    // capture_begin and capture_end as a graph, and replay it with the same pointers and
    // sizes (the contents of the buffers may change between replays).
    int (*capture_begin)(void *queue);
    int (*capture_end)(void *queue, void **graph);
    int (*graph_launch)(void *graph, void *queue);
    void (*graph_destroy)(void *graph);
} Ops;

extern const Ops ops_ref;

// Number of threads ops_ref uses (all cores by default; OMP_NUM_THREADS overrides).
int ops_ref_threads(void);

#endif
