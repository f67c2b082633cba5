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

// One checkpoint tensor that becomes (part of) a weight: its name, the shape the config
// implies, and the slice this rank reads (shard.h). `rule` names the sharding rule when it
// differs from the name (a tied embedding read as the LM head).
typedef struct Part {
    const char *name;
    int64_t rows, cols; // cols 0: a vector
    const StTensor *t;
    const char *rule;
    TensorSlice slice;
} Part;

static MxStatus find_part(const ModelWeights *w, Part *p) {
    const StTensor *t = tensor_set_find(&w->files, p->name);
    if (!t) return mx_fail(MX_ERR_TENSOR_MISSING, "%s", p->name);
    if (st_dtype_to_dtype(t->dtype) < 0) return mx_fail(MX_ERR_TENSOR_DTYPE, "%s is %s", p->name, st_dtype_name(t->dtype));
    int want_rank = p->cols > 0 ? 2 : 1;
    if (t->rank != want_rank || t->shape[0] != p->rows || (p->cols > 0 && t->shape[1] != p->cols)) {
        char got[96] = "";
        for (int i = 0, n = 0; i < t->rank && n < (int)sizeof got - 24; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (p->cols > 0)
            return mx_fail(MX_ERR_TENSOR_SHAPE, "%s is [%s], config implies [%lld, %lld]", p->name, got,
                           (long long)p->rows, (long long)p->cols);
        return mx_fail(MX_ERR_TENSOR_SHAPE, "%s is [%s], config implies [%lld]", p->name, got, (long long)p->rows);
    }
    p->t = t;
    return shard_tensor(w->cfg, w->shard.tp, w->shard.rank, p->rule ? p->rule : p->name, p->rows, p->cols, &p->slice);
}

// Elements of a part's slice.
static size_t slice_elems(const Part *p) {
    return (size_t)p->slice.rows * (size_t)(p->cols > 0 ? p->slice.cols : 1);
}

// Whether the slice is one contiguous run of the stored tensor (whole rows).
static bool slice_contiguous(const Part *p) {
    return p->cols == 0 || (p->slice.col_first == 0 && p->slice.cols == p->cols);
}

// The slice's first element in the mapping.
static const char *slice_start(const Part *p, size_t esize) {
    return (const char *)p->t->data + (size_t)p->slice.row_first * (size_t)(p->cols > 0 ? p->cols : 1) * esize;
}

// dst[i] = src[i] converted from `from` to `to` (exact, or round-to-nearest-even).
static void convert(void *dst, DType to, const void *src, DType from, size_t n) {
    if (to == from) {
        memcpy(dst, src, n * dtype_size(to));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float v = dtype_load(src, from, i);
        if (to == DT_F32) ((float *)dst)[i] = v;
        else if (to == DT_BF16) ((uint16_t *)dst)[i] = f32_to_bf16(v);
        else ((uint16_t *)dst)[i] = f32_to_f16(v);
    }
}

// The weight made of the slices of parts[0..n) stacked by rows. A single contiguous slice
// already in the wanted dtype and suitably aligned is used in place on a host-memory
// backend; anything else is converted (and gathered, for a column slice) into one backend
// buffer.
static MxStatus bind(ModelWeights *w, void *queue, Part *parts, int n, Weight *out) {
    for (int i = 0; i < n; i++) {
        MxStatus st = find_part(w, &parts[i]);
        if (st) return st;
    }
    const Ops *ops = w->ops;
    DType first = (DType)st_dtype_to_dtype(parts[0].t->dtype), want = first;
    for (int i = 1; i < n; i++)
        if (st_dtype_to_dtype(parts[i].t->dtype) != (int)first) want = DT_F32; // mixed: widen
    if (!ops->host_memory) want = ops->act_dtype;
    out->dtype = want;

    uint64_t elems = 0;
    for (int i = 0; i < n; i++) elems += slice_elems(&parts[i]);
    size_t bytes = (size_t)elems * dtype_size(want);
    w->bytes += bytes;
    // The format does not promise aligned data offsets: an unaligned tensor is copied even
    // on a host-memory backend, so the ops may read it as float / uint16_t.
    const char *in_place = slice_start(&parts[0], dtype_size(first));
    if (n == 1 && ops->host_memory && want == first && slice_contiguous(&parts[0]) &&
        (uintptr_t)in_place % dtype_size(want) == 0) {
        out->data = in_place;
        return MX_OK;
    }
    char *buf = ops->alloc(bytes);
    if (!buf) return mx_fail(MX_ERR_NOMEM, "backend memory for %s (%zu bytes)", parts[0].name, bytes);
    w->owned[w->n_owned++] = buf;
    out->data = buf;
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const Part *p = &parts[i];
        DType from = (DType)st_dtype_to_dtype(p->t->dtype);
        size_t esize = dtype_size(from), count = slice_elems(p), part_bytes = count * dtype_size(want);
        const char *src = slice_start(p, esize);
        void *staged = NULL;
        if (!slice_contiguous(p)) { // gather this rank's columns of every row, then convert
            size_t row_bytes = (size_t)p->slice.cols * esize, stride = (size_t)p->cols * esize;
            char *gathered = mx_malloc(count * esize);
            if (!gathered) return mx_fail(MX_ERR_NOMEM, "staging %s", p->name);
            for (int64_t r = 0; r < p->slice.rows; r++)
                memcpy(gathered + (size_t)r * row_bytes, src + (size_t)r * stride + (size_t)p->slice.col_first * esize,
                       row_bytes);
            staged = gathered;
            if (from != want) {
                if (!(staged = mx_malloc(part_bytes))) {
                    mx_free(gathered);
                    return mx_fail(MX_ERR_NOMEM, "staging %s", p->name);
                }
                convert(staged, want, gathered, from, count);
                mx_free(gathered);
            }
            src = staged;
        } else if (from != want || (uintptr_t)src % esize != 0) {
            if (!(staged = mx_malloc(part_bytes))) return mx_fail(MX_ERR_NOMEM, "staging %s", p->name);
            convert(staged, want, src, from, count);
            src = staged;
        }
        int rc = ops->upload(buf + offset, src, part_bytes, queue);
        mx_free(staged); // upload's source is reusable when it returns (kernels.h)
        if (rc != OPS_OK) return mx_fail(MX_ERR_OPS, "uploading %s", p->name);
        offset += part_bytes;
    }
    return MX_OK;
}

static MxStatus bind_layer(ModelWeights *w, const ModelConfig *c, void *queue, int l) {
    int64_t d = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t in = c->intermediate_size;
    LayerWeights *lw = &w->layers[l];
    static const char *suffix[] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    };
    char names[9][128];
    for (int i = 0; i < 9; i++) snprintf(names[i], sizeof names[i], "model.layers.%d.%s", l, suffix[i]);
    Part attn_norm[] = {{.name = names[0], .rows = d}};
    Part qkv[] = {{.name = names[1], .rows = q, .cols = d}, {.name = names[2], .rows = kv, .cols = d},
                  {.name = names[3], .rows = kv, .cols = d}};
    Part o[] = {{.name = names[4], .rows = d, .cols = q}};
    Part mlp_norm[] = {{.name = names[5], .rows = d}};
    Part gate_up[] = {{.name = names[6], .rows = in, .cols = d}, {.name = names[7], .rows = in, .cols = d}};
    Part down[] = {{.name = names[8], .rows = d, .cols = in}};
    MxStatus st;
    if ((st = bind(w, queue, attn_norm, 1, &lw->attn_norm)) || (st = bind(w, queue, qkv, 3, &lw->wqkv)) ||
        (st = bind(w, queue, o, 1, &lw->wo)) || (st = bind(w, queue, mlp_norm, 1, &lw->mlp_norm)) ||
        (st = bind(w, queue, gate_up, 2, &lw->w_gate_up)) || (st = bind(w, queue, down, 1, &lw->w_down)))
        return st;
    return MX_OK;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)data)[i]) * 0x100000001b3ull;
    return h;
}

// Names, dtypes, shapes and up to 64 leading bytes of every tensor: cheap, and enough to tell
// two different checkpoints (or versions) apart.
static uint64_t checkpoint_fingerprint(const TensorSet *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int f = 0; f < s->n_files; f++)
        for (int i = 0; i < s->files[f].n_tensors; i++) {
            const StTensor *t = &s->files[f].tensors[i];
            h = fnv1a(h, t->name, strlen(t->name) + 1);
            h = fnv1a(h, &t->dtype, sizeof t->dtype);
            h = fnv1a(h, t->shape, sizeof t->shape[0] * (size_t)t->rank);
            h = fnv1a(h, t->data, t->nbytes < 64 ? (size_t)t->nbytes : 64);
        }
    return h;
}

static MxStatus bind_all(ModelWeights *w, const ModelConfig *c, void *queue, void (*progress)(int, int)) {
    w->fingerprint = checkpoint_fingerprint(&w->files);
    const StTensor *emb = tensor_set_find(&w->files, "model.embed_tokens.weight");
    if (emb && emb->rank == 2 && emb->shape[0] != c->vocab_size)
        return mx_fail(MX_ERR_VOCAB_MISMATCH, "vocab_size %d, model.embed_tokens.weight has %lld rows", c->vocab_size,
                       (long long)emb->shape[0]);
    int layers = max_layer_index(&w->files) + 1;
    if (layers != c->n_layers)
        return mx_fail(MX_ERR_LAYER_MISMATCH, "num_hidden_layers %d, the weights have %d layers", c->n_layers, layers);

    Part embed[] = {{.name = "model.embed_tokens.weight", .rows = c->vocab_size, .cols = c->hidden_size}};
    MxStatus st = bind(w, queue, embed, 1, &w->embed);
    for (int l = 0; l < c->n_layers && !st; l++) {
        st = bind_layer(w, c, queue, l);
        if (!st && progress) progress(l + 1, c->n_layers);
    }
    Part norm[] = {{.name = "model.norm.weight", .rows = c->hidden_size}};
    if (!st) st = bind(w, queue, norm, 1, &w->final_norm);
    if (st) return st;
    if (c->tie_word_embeddings && w->shard.tp == 1) {
        w->lm_head = w->embed;
        return MX_OK;
    }
    // Split by vocab; a tied head is this rank's rows of the embedding.
    Part head[] = {{.name = c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                    .rows = c->vocab_size, .cols = c->hidden_size, .rule = "lm_head.weight"}};
    return bind(w, queue, head, 1, &w->lm_head);
}

MxStatus weights_load(const char *dir, const ModelConfig *cfg, const ShardLayout *shard, const Ops *ops, void *queue,
                      void (*progress)(int done, int total), ModelWeights *out) {
    memset(out, 0, sizeof *out);
    out->ops = ops;
    out->cfg = cfg;
    out->shard = *shard;
    MxStatus st = tensor_set_open(dir, &out->files);
    if (st) return st;
    out->layers = mx_calloc((size_t)cfg->n_layers, sizeof *out->layers);
    out->owned = mx_calloc((size_t)cfg->n_layers * 6 + 3, sizeof *out->owned); // every weight bound
    if (!out->layers || !out->owned) {
        weights_free(out);
        return mx_fail(MX_ERR_NOMEM, "weight tables");
    }
    st = bind_all(out, cfg, queue, progress);
    if (st == MX_OK && !ops->host_memory) {
        // Everything now lives in device memory: the files need not stay mapped.
        if (ops->sync(queue) != OPS_OK) st = mx_fail(MX_ERR_OPS, "uploading weights");
        tensor_set_close(&out->files);
        memset(&out->files, 0, sizeof out->files);
    }
    if (st) weights_free(out);
    return st;
}

// A dummy weight of n elements filled in [lo, hi].
static MxStatus dummy(ModelWeights *w, void *queue, size_t n, uint64_t seed, float lo, float hi, Weight *out) {
    size_t bytes = n * dtype_size(DT_BF16);
    void *buf = w->ops->alloc(bytes);
    if (!buf) return mx_fail(MX_ERR_NOMEM, "backend memory for dummy weights (%zu bytes)", bytes);
    w->owned[w->n_owned++] = buf;
    w->bytes += bytes;
    if (w->ops->fill(buf, n, DT_BF16, seed, lo, hi, queue) != OPS_OK) return mx_fail(MX_ERR_OPS, "filling dummy weights");
    *out = (Weight){buf, DT_BF16};
    return MX_OK;
}

MxStatus weights_init_dummy(const ModelConfig *c, const ShardLayout *sh, const Ops *ops, void *queue, uint64_t seed,
                            void (*progress)(int done, int total), ModelWeights *out) {
    memset(out, 0, sizeof *out);
    out->ops = ops;
    out->cfg = c;
    out->shard = *sh;
    out->layers = mx_calloc((size_t)c->n_layers, sizeof *out->layers);
    out->owned = mx_calloc((size_t)c->n_layers * 6 + 3, sizeof *out->owned);
    if (!out->layers || !out->owned) {
        weights_free(out);
        return mx_fail(MX_ERR_NOMEM, "weight tables");
    }
    const float a = 0.02f * 1.7320508f; // uniform on [-a, a] has std 0.02
    // This rank's shapes (shard.h); the embedding is whole, the LM head its vocab rows.
    size_t d = (size_t)c->hidden_size, in = (size_t)sh->intermediate, v = (size_t)c->vocab_size;
    size_t qkv = ((size_t)sh->n_heads + 2 * (size_t)sh->n_kv_heads) * (size_t)c->head_dim;
    size_t qd = (size_t)sh->n_heads * (size_t)c->head_dim, v_local = (size_t)sh->vocab_len;
    MxStatus st = dummy(out, queue, v * d, seed, -a, a, &out->embed);
    for (int l = 0; l < c->n_layers && !st; l++) {
        LayerWeights *lw = &out->layers[l];
        uint64_t s = seed + 16 * (uint64_t)(l + 1);
        if ((st = dummy(out, queue, d, s, 1, 1, &lw->attn_norm)) || (st = dummy(out, queue, qkv * d, s + 1, -a, a, &lw->wqkv)) ||
            (st = dummy(out, queue, d * qd, s + 2, -a, a, &lw->wo)) || (st = dummy(out, queue, d, s + 3, 1, 1, &lw->mlp_norm)) ||
            (st = dummy(out, queue, 2 * in * d, s + 4, -a, a, &lw->w_gate_up)) ||
            (st = dummy(out, queue, d * in, s + 5, -a, a, &lw->w_down)))
            break;
        if (progress) { // fills run asynchronously: wait for the layer, so the bar follows the device
            if (ops->sync(queue) != OPS_OK) st = mx_fail(MX_ERR_OPS, "filling dummy weights");
            else progress(l + 1, c->n_layers);
        }
    }
    if (!st) st = dummy(out, queue, d, seed + 2, 1, 1, &out->final_norm);
    if (!st) {
        if (c->tie_word_embeddings && sh->tp == 1) out->lm_head = out->embed;
        else st = dummy(out, queue, v_local * d, seed + 3, -a, a, &out->lm_head);
    }
    if (!st && ops->sync(queue) != OPS_OK) st = mx_fail(MX_ERR_OPS, "filling dummy weights");
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
