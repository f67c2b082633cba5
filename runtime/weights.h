// Model weights: the tensors of a Hugging Face Llama-family checkpoint, checked against the
// config and placed where the backend can read them.
//
// On a host-memory backend (ops_ref) weights point straight into the mmap'd safetensors
// files, in their stored dtype; otherwise each tensor is copied into backend memory.
#ifndef MYRMEX_WEIGHTS_H
#define MYRMEX_WEIGHTS_H

#include "../kernels/kernels.h"
#include "model_config.h"
#include "safetensors.h"

typedef struct Weight {
    const void *data; // backend memory
    DType dtype;
} Weight;

typedef struct LayerWeights {
    Weight attn_norm; // [D]
    Weight wq;        // [Hq * Dh, D]
    Weight wk, wv;    // [Hkv * Dh, D]
    Weight wo;        // [D, Hq * Dh]
    Weight mlp_norm;  // [D]
    Weight w_gate;    // [I, D]
    Weight w_up;      // [I, D]
    Weight w_down;    // [D, I]
} LayerWeights;

typedef struct ModelWeights {
    Weight embed;          // [V, D]
    LayerWeights *layers;  // [n_layers]
    Weight final_norm;     // [D]
    Weight lm_head;        // [V, D]; the embedding when tie_word_embeddings
    TensorSet files;       // the mapped checkpoint
    const Ops *ops;
    void **owned;          // backend buffers to free (copies; host-memory backends copy only unaligned tensors)
    int n_owned;
    uint64_t bytes;        // weight bytes in use
} ModelWeights;

// Opens DIR's safetensors files and binds every tensor the architecture needs. Errors:
// the tensor_set_open codes, MX_ERR_TENSOR_MISSING / _SHAPE / _DTYPE naming the tensor,
// MX_ERR_VOCAB_MISMATCH, MX_ERR_LAYER_MISMATCH, MX_ERR_NOMEM. On error nothing is leaked.
MxStatus weights_load(const char *dir, const ModelConfig *cfg, const Ops *ops, void *stream, ModelWeights *out);
void weights_free(ModelWeights *w);

#endif
