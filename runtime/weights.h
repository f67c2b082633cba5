// Model weights: the tensors of a Hugging Face Llama-family checkpoint, checked against the
// config and placed where the backend can read them.
//
// The projections that read the same input are fused into one matrix so one GEMM computes
// them: Q|K|V by rows into wqkv, gate|up into w_gate_up (each a copy in backend memory).
// Other tensors on a host-memory backend (ops_ref) point straight into the mmap'd
// safetensors files in their stored dtype. A device backend gets every weight converted to
// its activation dtype (bf16 for CUDA), so f32 and f16 checkpoints load too.
#ifndef MYRMEX_WEIGHTS_H
#define MYRMEX_WEIGHTS_H

#include "../kernels/kernels.h"
#include "model_config.h"
#include "safetensors.h"
#include "shard.h"

typedef struct Weight {
    const void *data; // backend memory
    DType dtype;
} Weight;

typedef struct LayerWeights {
    Weight attn_norm; // [D]
    Weight wqkv;      // [(Hq + 2*Hkv) * Dh, D]: q_proj rows, then k_proj, then v_proj
    Weight wo;        // [D, Hq * Dh]
    Weight mlp_norm;  // [D]
    Weight w_gate_up; // [2*I, D]: gate_proj rows, then up_proj
    Weight w_down;    // [D, I]
} LayerWeights;

typedef struct ModelWeights {
    Weight embed;          // [V, D]
    LayerWeights *layers;  // [n_layers]
    Weight final_norm;     // [D]
    Weight lm_head;        // [V_local, D] this rank's vocab rows; the embedding when tied and tp 1
    TensorSet files;       // the mapped checkpoint
    const ModelConfig *cfg;
    ShardLayout shard;     // which slice of each tensor this rank holds
    const Ops *ops;
    void **owned;          // backend buffers to free (copies; host-memory backends copy only unaligned tensors)
    int n_owned;
    uint64_t bytes;        // weight bytes as loaded (in backend memory or mapped)
    uint64_t fingerprint;  // hash of the checkpoint's tensor table and each tensor's first
                           // bytes: processes of one model compare it (cluster.h)
} ModelWeights;

// Opens DIR's safetensors files and binds this rank's slice (shard) of every tensor the
// architecture needs, reading no other part of the files (cfg is read during the load). Errors:
// the tensor_set_open codes, MX_ERR_TENSOR_MISSING / _SHAPE / _DTYPE naming the tensor,
// MX_ERR_VOCAB_MISMATCH, MX_ERR_LAYER_MISMATCH, MX_ERR_NOMEM. On error nothing is leaked.
// progress, when not NULL, is called after each layer with (layers done, layers total).
MxStatus weights_load(const char *dir, const ModelConfig *cfg, const ShardLayout *shard, const Ops *ops, void *queue,
                      void (*progress)(int done, int total), ModelWeights *out);
// Dummy weights of cfg's shapes made in backend memory by Ops.fill (nothing read from disk,
// no host copy): matrices uniform with std 0.02, norm weights 1. bf16 on every backend.
// progress, when not NULL, is called after each layer is filled, as for weights_load.
MxStatus weights_init_dummy(const ModelConfig *cfg, const ShardLayout *shard, const Ops *ops, void *queue, uint64_t seed,
                            void (*progress)(int done, int total), ModelWeights *out);

void weights_free(ModelWeights *w);

#endif
