// A loaded model on one backend: config, weights, the paged KV cache, the block pool and
// the activation workspace; and the forward pass over a varlen Batch (forward.c).
#ifndef MYRMEX_MODEL_H
#define MYRMEX_MODEL_H

#include "../kernels/kernels.h"
#include "backend.h"
#include "batch.h"
#include "kv_cache.h"
#include "model_config.h"
#include "shard.h"
#include "weights.h"

typedef struct Comm Comm; // comm.h

typedef struct ModelOptions {
    int block_size;      // tokens per KV block (default 16)
    int kv_blocks;       // KV pool size in blocks, block 0 (the null block) included; 0: sized by kv_fraction
    double kv_fraction;  // with kv_blocks 0: this fraction of the backend memory left after
                         // weights and workspace (default 0.9), capped at what max_step_seqs
                         // full-length sequences can use
    int max_step_tokens; // T capacity of one forward (default 512)
    int max_step_seqs;   // S capacity of one forward (default 64)
    int max_logit_rows;  // R capacity of one forward (default max_step_seqs)
    const char *gemm;    // GEMM kernels on CUDA: NULL/"auto", "cublas", "skinny", "mma", "wgmma"
    bool no_graphs;      // launch decode steps op by op even where the backend has graphs
    int tp, rank;        // this model is tensor-parallel rank `rank` of `tp` (default 1, 0)
    bool defer_kv;       // load without the KV pool: model_kv_budget, then model_alloc_kv
                         // (tensor-parallel ranks agree on one pool size first)
    void (*progress)(int layers_done, int layers_total); // weight loading progress, or NULL
} ModelOptions;

// Defaults as documented above.
ModelOptions model_options_default(void);

// Where the memory went, for the start-up plan and `inspect`.
typedef struct MemoryPlan {
    uint64_t weight_bytes, workspace_bytes, kv_bytes; // in backend memory (weights: as loaded)
    int kv_blocks, block_size;
    int64_t kv_tokens;                                // kv_blocks * block_size
} MemoryPlan;

// Activation buffers for one step, in backend memory (shapes for T = max_step_tokens).
typedef struct Workspace {
    void *base;               // the one allocation the rest is carved from
    void *h;                  // [T, D] residual stream
    void *x;                  // [T, D] normalised input of the next block
    void *delta;              // [T, D] output of attention or MLP, added to h
    void *qkv;                // [T, (Hq + 2*Hkv) * Dh] fused projection
    void *q;                  // [T, Hq * Dh] rotated queries
    void *attn;               // [T, Hq * Dh]
    void *gate_up;            // [T, 2*I] fused projection
    void *act;                // [T, I]
    float *logits;            // [R, V] f32 (rank 0 only when tp > 1)
    float *logits_local;      // [R, V_local] f32: this rank's vocab slice (== logits when tp 1)
    // The step's batch, copied in one upload from `staging` (host memory from host_alloc
    // laid out the same way): [batch_offset, batch_offset + batch_bytes) of base.
    int32_t *tokens, *positions, *q_start, *ctx_len, *kv_indptr, *kv_indices, *rows;
    int64_t *slots;
    float *temperature, *top_p;  // [R] the sample op's per-row parameters (StepSampling)
    int32_t *top_k;              // [R]
    uint64_t *seed, *counter;    // [R]
    int32_t *sampled;            // [R] its output (not part of the uploaded region)
    size_t batch_offset, batch_bytes;
    char *staging;
} Workspace;

#define MODEL_GRAPH_BUCKETS 11 // up to 1024 sequences

typedef struct Model {
    ModelConfig cfg;
    ModelOptions opt;
    ShardLayout shard;         // what this rank holds; the whole model when tp 1
    Comm *comm;                // all-reduce and gather between ranks; NULL when tp 1
    Backend backend;
    const Ops *ops;            // backend.ops
    void *queue;               // the model's queue (Ops.queue_create)
    ModelWeights w;
    BlockPool pool;
    void **k_cache, **v_cache; // [n_layers] each [kv_blocks, block_size, Hkv, Dh] act
    float *inv_freq;           // [Dh / 2] backend memory
    Workspace ws;
    int max_kv_indices;        // capacity of the batch's kv_indices
    MemoryPlan plan;
    // Decode steps replayed from graphs, one per bucket of 2^i sequences, without and with
    // the sample op at the end (with a comm always without: the ranks' graphs must match),
    // captured the second time a bucket runs (forward.c).
    bool graphs_enabled;
    void *graphs[2][MODEL_GRAPH_BUCKETS];
    bool graph_warm[2][MODEL_GRAPH_BUCKETS]; // the bucket has run once op by op
    Batch graph_batch;         // the padded decode batch
} Model;

// Loads DIR (config.json + safetensors) onto the backend. On error returns the config,
// safetensors or weights code (MX_ERR_NOMEM for backend memory, MX_ERR_ARG for bad
// options) and leaves *m zeroed.
MxStatus model_load(const char *dir, const Backend *backend, const ModelOptions *opt, Model *m);
// The same with dummy weights of cfg's shapes made on the backend (weights_init_dummy).
MxStatus model_load_dummy(const ModelConfig *cfg, const Backend *backend, const ModelOptions *opt, Model *m);
void model_free(Model *m);
// Destroys the decode graphs (a launch in flight completes first) and runs every later step
// op by op. At tp > 1 it comes before the comm is aborted: NCCL cannot finish an abort while
// graphs hold its collectives.
void model_drop_graphs(Model *m);

// With opt.defer_kv: the KV blocks (the null block included) that kv_fraction of the
// backend's free memory affords when `sharers` models will take their pools from it (ranks
// on one device), capped as documented for kv_blocks; opt.kv_blocks when given.
MxStatus model_kv_budget(const Model *m, int sharers, int *blocks);
// Allocates the KV pool of `blocks` blocks and its block pool, and finishes the load.
MxStatus model_alloc_kv(Model *m, int blocks);

// "weights 24.2 GiB, workspace 1.1 GiB, KV 96.0 GiB = 6144 blocks x 16 = 98304 tokens"
// (each size in its largest binary unit)
void model_plan_describe(const MemoryPlan *p, char *buf, size_t len);

// A Batch sized for this model's capacities; release with batch_destroy.
MxStatus model_batch_init(const Model *m, Batch *b);

// What the device ops cannot check: capacities, token ids, the context limit, block ids, and
// the batch's structure (offsets, positions, slots, logits rows). MX_ERR_ARG, MX_ERR_TOKEN or
// MX_ERR_CONTEXT (model_forward checks it first).
MxStatus model_check_batch(const Model *m, const Batch *b);

// Runs one step: embeds b's tokens, writes their K/V into the pages named by slot_mapping,
// attends over each sequence's blocks, and writes f32 logits for b->logits_rows into
// logits[n_rows, V] (host memory). Errors: MX_ERR_ARG (batch over capacity or inconsistent),
// MX_ERR_TOKEN, MX_ERR_CONTEXT (a context past max_position_embeddings), MX_ERR_OPS.
MxStatus model_forward(Model *m, const Batch *b, float *logits);

// How to draw the token of each logits row (host arrays of b->n_rows, the Ops.sample rule;
// each row's temperature finite, top_p in (0, 1]).
typedef struct StepSampling {
    const float *temperature, *top_p;
    const int32_t *top_k;
    const uint64_t *seed, *counter;
} StepSampling;

// MX_ERR_ARG unless each of the n_rows rows has a finite temperature and top_p in (0, 1].
MxStatus step_sampling_check(const StepSampling *sampling, int n_rows);

// model_forward, then one token per logits row drawn on the backend into tokens[n_rows];
// the logits are downloaded too only when logits is not NULL (a device backend then moves
// R ints per step instead of R x V floats).
MxStatus model_forward_sample(Model *m, const Batch *b, const StepSampling *sampling, int32_t *tokens, float *logits);

#endif
