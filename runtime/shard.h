// Tensor-parallel sharding (Megatron-style) as pure functions of (config, tp, rank).
//
// Each of tp ranks holds a slice of every layer:
//   q/k/v_proj, gate/up_proj  split by output rows (heads, intermediate columns);
//   o_proj, down_proj         split by input columns; the forward all-reduces their outputs;
//   lm_head                   split by vocab rows; the logits are gathered on rank 0;
//   embedding, norms          replicated.
// When tp > Hkv, each KV head is replicated over the tp / Hkv ranks whose query heads read it.
// Sizes that cannot be split (Hq % tp, Hkv vs tp, I % tp, V < tp) are MX_ERR_TP_SPLIT.
#ifndef MYRMEX_SHARD_H
#define MYRMEX_SHARD_H

#include <stdint.h>

#include "model_config.h"
#include "status.h"

#define SHARD_MAX_TP 64

// What one rank holds. With tp 1 every field equals the whole model's.
typedef struct ShardLayout {
    int rank, tp;
    int n_heads, head_first;       // query heads [head_first, head_first + n_heads)
    int n_kv_heads, kv_head_first; // KV heads [kv_head_first, kv_head_first + n_kv_heads)
    int intermediate, inter_first; // MLP columns [inter_first, inter_first + intermediate)
    int vocab_len, vocab_first;    // LM head rows [vocab_first, vocab_first + vocab_len)
    int vocab_stride;              // ceil(V / tp): rank r's vocab starts at r * vocab_stride
} ShardLayout;

MxStatus shard_layout(const ModelConfig *c, int tp, int rank, ShardLayout *out);

// The part of a stored [rows, cols] tensor (cols 0: a vector) that a rank reads.
typedef struct TensorSlice {
    int64_t row_first, rows;
    int64_t col_first, cols; // cols 0 for a vector
} TensorSlice;

// The slice of the checkpoint tensor `name` (a Llama-family name such as
// "model.layers.3.self_attn.k_proj.weight") of shape [rows, cols] for rank of tp. "lm_head.weight"
// is also the name to slice a tied embedding by when it serves as the LM head. Errors:
// MX_ERR_TP_SPLIT, MX_ERR_ARG for a name it does not know or a shape the config does not imply.
MxStatus shard_tensor(const ModelConfig *c, int tp, int rank, const char *name, int64_t rows, int64_t cols,
                      TensorSlice *out);

#endif
