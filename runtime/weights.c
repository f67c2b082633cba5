// Binding checkpoint tensors to the model's weight structs (see weights.h).
#include "weights.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

// Highest N such that some tensor is named "model.layers.N.*", or -1.
static int max_layer_index(const TensorSet *s) {
    int max = -1;
    for (int f = 0; f < s->n_files; f++) {
        for (int i = 0; i < s->files[f].n_tensors; i++) {
            const char *name = s->files[f].tensors[i].name;
            if (strncmp(name, "model.layers.", 13) != 0) continue;
            char *end;
            long n = strtol(name + 13, &end, 10);
            if (end != name + 13 && *end == '.' && n >= 0 && n < 1000000 && n > max) max = (int)n;
        }
    }
    return max;
}

static MxStatus bind(ModelWeights *w, void *stream, const char *name, int64_t rows, int64_t cols, Weight *out) {
    const StTensor *t = tensor_set_find(&w->files, name);
    if (!t) return mx_fail(MX_ERR_TENSOR_MISSING, "%s", name);
    int dt = st_dtype_to_dtype(t->dtype);
    if (dt < 0) return mx_fail(MX_ERR_TENSOR_DTYPE, "%s is %s", name, st_dtype_name(t->dtype));
    int want_rank = cols > 0 ? 2 : 1;
    if (t->rank != want_rank || t->shape[0] != rows || (cols > 0 && t->shape[1] != cols)) {
        char got[96] = "";
        for (int i = 0, n = 0; i < t->rank && n < (int)sizeof got - 24; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (cols > 0)
            return mx_fail(MX_ERR_TENSOR_SHAPE, "%s is [%s], config implies [%lld, %lld]", name, got,
                           (long long)rows, (long long)cols);
        return mx_fail(MX_ERR_TENSOR_SHAPE, "%s is [%s], config implies [%lld]", name, got, (long long)rows);
    }
    out->dtype = (DType)dt;
    w->bytes += t->nbytes;
    // The format does not promise aligned data offsets: an unaligned tensor is copied even
    // on a host-memory backend, so the ops may read it as float / uint16_t.
    if (w->ops->host_memory && (uintptr_t)t->data % dtype_size(out->dtype) == 0) {
        out->data = t->data;
        return MX_OK;
    }
    void *copy = w->ops->alloc(t->nbytes);
    if (!copy) return mx_fail(MX_ERR_NOMEM, "backend memory for %s (%llu bytes)", name, (unsigned long long)t->nbytes);
    w->owned[w->n_owned++] = copy;
    if (w->ops->upload(copy, t->data, t->nbytes, stream) != OPS_OK) return mx_fail(MX_ERR_OPS, "uploading %s", name);
    out->data = copy;
    return MX_OK;
}

static MxStatus bind_layer(ModelWeights *w, const ModelConfig *c, void *stream, int l) {
    int64_t d = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t in = c->intermediate_size;
    LayerWeights *lw = &w->layers[l];
    struct { const char *suffix; int64_t rows, cols; Weight *dst; } table[] = {
        {"input_layernorm.weight", d, 0, &lw->attn_norm},
        {"self_attn.q_proj.weight", q, d, &lw->wq},
        {"self_attn.k_proj.weight", kv, d, &lw->wk},
        {"self_attn.v_proj.weight", kv, d, &lw->wv},
        {"self_attn.o_proj.weight", d, q, &lw->wo},
        {"post_attention_layernorm.weight", d, 0, &lw->mlp_norm},
        {"mlp.gate_proj.weight", in, d, &lw->w_gate},
        {"mlp.up_proj.weight", in, d, &lw->w_up},
        {"mlp.down_proj.weight", d, in, &lw->w_down},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.%s", l, table[i].suffix);
        MxStatus st = bind(w, stream, name, table[i].rows, table[i].cols, table[i].dst);
        if (st) return st;
    }
    return MX_OK;
}

static MxStatus bind_all(ModelWeights *w, const ModelConfig *c, void *stream) {
    const StTensor *emb = tensor_set_find(&w->files, "model.embed_tokens.weight");
    if (emb && emb->rank == 2 && emb->shape[0] != c->vocab_size)
        return mx_fail(MX_ERR_VOCAB_MISMATCH, "vocab_size %d, model.embed_tokens.weight has %lld rows", c->vocab_size,
                       (long long)emb->shape[0]);
    int layers = max_layer_index(&w->files) + 1;
    if (layers != c->n_layers)
        return mx_fail(MX_ERR_LAYER_MISMATCH, "num_hidden_layers %d, the weights have %d layers", c->n_layers, layers);

    MxStatus st = bind(w, stream, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &w->embed);
    for (int l = 0; l < c->n_layers && !st; l++) st = bind_layer(w, c, stream, l);
    if (!st) st = bind(w, stream, "model.norm.weight", c->hidden_size, 0, &w->final_norm);
    if (st) return st;
    if (c->tie_word_embeddings) {
        w->lm_head = w->embed;
        return MX_OK;
    }
    return bind(w, stream, "lm_head.weight", c->vocab_size, c->hidden_size, &w->lm_head);
}

MxStatus weights_load(const char *dir, const ModelConfig *cfg, const Ops *ops, void *stream, ModelWeights *out) {
    memset(out, 0, sizeof *out);
    out->ops = ops;
    MxStatus st = tensor_set_open(dir, &out->files);
    if (st) return st;
    out->layers = mx_calloc((size_t)cfg->n_layers, sizeof *out->layers);
    out->owned = mx_calloc((size_t)cfg->n_layers * 9 + 3, sizeof *out->owned); // every tensor bound
    if (!out->layers || !out->owned) {
        weights_free(out);
        return mx_fail(MX_ERR_NOMEM, "weight tables");
    }
    st = bind_all(out, cfg, stream);
    if (st) weights_free(out);
    return st;
}

void weights_free(ModelWeights *w) {
    for (int i = 0; i < w->n_owned; i++) w->ops->free(w->owned[i]);
    mx_free(w->owned);
    mx_free(w->layers);
    tensor_set_close(&w->files);
    memset(w, 0, sizeof *w);
}
