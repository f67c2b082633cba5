// A loaded model on one backend: config, weights, the paged KV cache, the block pool and
// the activation workspace; and the forward pass over a varlen Batch (forward.c).
#ifndef MYRMEX_MODEL_H
#define MYRMEX_MODEL_H

#include "../kernels/kernels.h"
#include "batch.h"
#include "kv_cache.h"
#include "model_config.h"
#include "weights.h"

typedef struct ModelOptions {
    int block_size;      // tokens per KV block (default 16)
    int kv_blocks;       // KV pool size in blocks; required > 0
    int max_step_tokens; // T capacity of one forward (default 512)
    int max_step_seqs;   // S capacity of one forward (default 64)
    int max_logit_rows;  // R capacity of one forward (default max_step_seqs)
} ModelOptions;

// Defaults as documented above (kv_blocks = 0: the caller sizes the pool).
ModelOptions model_options_default(void);

// Activation buffers for one step, in backend memory (shapes for T = max_step_tokens).
typedef struct Workspace {
    void *base;               // the one allocation the rest is carved from
    void *h;                  // [T, D] residual stream
    void *x;                  // [T, D] normalised input of the next block
    void *delta;              // [T, D] output of attention or MLP, added to h
    void *q, *k, *v;          // [T, Hq*Dh], [T, Hkv*Dh], [T, Hkv*Dh]
    void *attn;               // [T, Hq*Dh]
    void *gate, *up, *act;    // [T, I]
    float *logits;            // [R, V] f32
    int32_t *tokens, *positions, *q_start, *ctx_len, *kv_indptr, *kv_indices, *rows; // batch copy
    int64_t *slots;
} Workspace;

typedef struct Model {
    ModelConfig cfg;
    ModelOptions opt;
    const Ops *ops;
    void *stream;
    ModelWeights w;
    BlockPool pool;
    void **k_cache, **v_cache; // [n_layers] each [kv_blocks, block_size, Hkv, Dh] act
    float *inv_freq;           // [Dh / 2] backend memory
    Workspace ws;
    int max_kv_indices;        // capacity of the batch's kv_indices
} Model;

// Loads DIR (config.json + safetensors) onto ops. On error returns the config, safetensors
// or weights code (or MX_ERR_NOMEM for backend memory) and leaves *m zeroed.
MxStatus model_load(const char *dir, const Ops *ops, const ModelOptions *opt, Model *m);
void model_free(Model *m);

// A Batch sized for this model's capacities; release with batch_destroy.
MxStatus model_batch_init(const Model *m, Batch *b);

// Runs one step: embeds b's tokens, writes their K/V into the pages named by slot_mapping,
// attends over each sequence's blocks, and writes f32 logits for b->logits_rows into
// logits[n_rows, V] (host memory). Errors: MX_ERR_ARG (batch over capacity or inconsistent),
// MX_ERR_TOKEN, MX_ERR_CONTEXT (a context past max_position_embeddings), MX_ERR_OPS.
MxStatus model_forward(Model *m, const Batch *b, float *logits);

#endif
