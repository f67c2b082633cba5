// Tensor-parallel sharding (see shard.h).
#include "shard.h"

#include <stdbool.h>
#include <string.h>

MxStatus shard_layout(const ModelConfig *c, int tp, int rank, ShardLayout *out) {
    memset(out, 0, sizeof *out);
    if (tp < 1 || tp > SHARD_MAX_TP || rank < 0 || rank >= tp)
        return mx_fail(MX_ERR_ARG, "rank %d of tensor-parallel degree %d (1..%d)", rank, tp, SHARD_MAX_TP);
    if (c->n_heads % tp)
        return mx_fail(MX_ERR_TP_SPLIT, "%d attention heads do not split over %d ranks", c->n_heads, tp);
    if (c->n_kv_heads >= tp ? c->n_kv_heads % tp : tp % c->n_kv_heads)
        return mx_fail(MX_ERR_TP_SPLIT, "%d KV heads do not split over %d ranks, nor replicate evenly", c->n_kv_heads, tp);
    if (c->intermediate_size % tp)
        return mx_fail(MX_ERR_TP_SPLIT, "intermediate size %d does not split over %d ranks", c->intermediate_size, tp);
    int stride = (c->vocab_size + tp - 1) / tp;
    if ((int64_t)stride * (tp - 1) >= c->vocab_size)
        return mx_fail(MX_ERR_TP_SPLIT, "vocab of %d does not split over %d ranks", c->vocab_size, tp);
    out->rank = rank;
    out->tp = tp;
    out->n_heads = c->n_heads / tp;
    out->head_first = rank * out->n_heads;
    if (c->n_kv_heads >= tp) {
        out->n_kv_heads = c->n_kv_heads / tp;
        out->kv_head_first = rank * out->n_kv_heads;
    } else { // each rank's query heads all read one KV head: the one of their GQA group
        out->n_kv_heads = 1;
        out->kv_head_first = out->head_first / (c->n_heads / c->n_kv_heads);
    }
    out->intermediate = c->intermediate_size / tp;
    out->inter_first = rank * out->intermediate;
    out->vocab_stride = stride;
    out->vocab_first = rank * stride;
    out->vocab_len = rank == tp - 1 ? c->vocab_size - out->vocab_first : stride;
    return MX_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

MxStatus shard_tensor(const ModelConfig *c, int tp, int rank, const char *name, int64_t rows, int64_t cols,
                      TensorSlice *out) {
    ShardLayout s;
    MxStatus st = shard_layout(c, tp, rank, &s);
    if (st) return st;
    *out = (TensorSlice){0, rows, 0, cols};
    int64_t dh = c->head_dim, d = c->hidden_size;
    // Each rule: the tensor's implied shape, then which dimension is cut where.
    if (ends_with(name, "self_attn.q_proj.weight")) {
        if (rows != c->n_heads * dh || cols != d) goto shape;
        out->row_first = s.head_first * dh, out->rows = s.n_heads * dh;
    } else if (ends_with(name, "self_attn.k_proj.weight") || ends_with(name, "self_attn.v_proj.weight")) {
        if (rows != c->n_kv_heads * dh || cols != d) goto shape;
        out->row_first = s.kv_head_first * dh, out->rows = s.n_kv_heads * dh;
    } else if (ends_with(name, "self_attn.o_proj.weight")) {
        if (rows != d || cols != c->n_heads * dh) goto shape;
        out->col_first = s.head_first * dh, out->cols = s.n_heads * dh;
    } else if (ends_with(name, "mlp.gate_proj.weight") || ends_with(name, "mlp.up_proj.weight")) {
        if (rows != c->intermediate_size || cols != d) goto shape;
        out->row_first = s.inter_first, out->rows = s.intermediate;
    } else if (ends_with(name, "mlp.down_proj.weight")) {
        if (rows != d || cols != c->intermediate_size) goto shape;
        out->col_first = s.inter_first, out->cols = s.intermediate;
    } else if (strcmp(name, "lm_head.weight") == 0) {
        if (rows != c->vocab_size || cols != d) goto shape;
        out->row_first = s.vocab_first, out->rows = s.vocab_len;
    } else if (strcmp(name, "model.embed_tokens.weight") == 0 || ends_with(name, "layernorm.weight") ||
               strcmp(name, "model.norm.weight") == 0) {
        // replicated
    } else {
        return mx_fail(MX_ERR_ARG, "no sharding rule for tensor %s", name);
    }
    return MX_OK;
shape:
    return mx_fail(MX_ERR_ARG, "%s of shape [%lld, %lld] is not what the config implies", name, (long long)rows,
                   (long long)cols);
}
