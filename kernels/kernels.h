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
//   `stream` is the backend's queue (a cudaStream_t for CUDA); ops_ref ignores it.
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

// Rotary embedding in place, Llama "rotate half" layout: element i pairs with i + Dh/2.
// For position p and pair i: angle = p * inv_freq[i]; any rope_scaling is already folded
// into inv_freq by the runtime.
typedef struct RopeParams {
    void *q;                  // [T, Hq, Dh] act
    void *k;                  // [T, Hkv, Dh] act
    const int32_t *positions; // [T]
    const float *inv_freq;    // [Dh / 2] f32
    int n_tokens, n_q_heads, n_kv_heads, head_dim;
} RopeParams;

// Writes this step's K and V rows into their cache slots. A negative slot is skipped.
typedef struct KvWriteParams {
    const void *k, *v;            // [T, Hkv, Dh] act
    void *k_cache, *v_cache;      // [num_blocks, block_size, Hkv, Dh] act
    const int64_t *slot_mapping;  // [T], in [0, num_blocks * block_size) or < 0
    int n_tokens, n_kv_heads, head_dim, block_size, num_blocks;
} KvWriteParams;

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

typedef struct Ops {
    const char *name;
    DType act_dtype;  // dtype of activations and KV pages
    bool host_memory; // true: backend memory is host memory, host pointers usable directly

    void *(*alloc)(size_t bytes); // backend memory, NULL on failure
    void (*free)(void *p);
    int (*upload)(void *dst, const void *src, size_t bytes, void *stream);   // host -> backend
    int (*download)(void *dst, const void *src, size_t bytes, void *stream); // backend -> host
    int (*sync)(void *stream);

    int (*embedding)(const EmbeddingParams *p, void *stream);
    int (*rmsnorm)(const RmsNormParams *p, void *stream);
    int (*gemm)(const GemmParams *p, void *stream);
    int (*rope)(const RopeParams *p, void *stream);
    int (*kv_write)(const KvWriteParams *p, void *stream);
    int (*attention)(const AttentionParams *p, void *stream);
    int (*silu_mul)(const SiluMulParams *p, void *stream);
    int (*lm_head)(const LmHeadParams *p, void *stream);
} Ops;

extern const Ops ops_ref;

// Number of threads ops_ref uses (all cores by default; OMP_NUM_THREADS overrides).
int ops_ref_threads(void);

#endif
