// Loading a model onto a backend: config, weights, KV pages, workspace (see model.h).
#include "model.h"

#include <string.h>

#include "alloc.h"

ModelOptions model_options_default(void) {
    return (ModelOptions){.block_size = 16, .kv_blocks = 0, .kv_fraction = 0.9, .max_step_tokens = 512,
                          .max_step_seqs = 64, .max_logit_rows = 64, .tp = 1, .rank = 0};
}

// Carves aligned sub-buffers out of one allocation: a first pass with base == NULL sizes it.
typedef struct Carver {
    char *base;
    size_t used;
} Carver;

static void *carve(Carver *c, size_t bytes) {
    c->used = (c->used + 255) & ~(size_t)255;
    void *p = c->base ? c->base + c->used : NULL;
    c->used += bytes;
    return p;
}

static void workspace_layout(Carver *c, Workspace *ws, const Model *m) {
    const ModelConfig *cfg = &m->cfg;
    const ModelOptions *o = &m->opt;
    size_t t = (size_t)o->max_step_tokens, a = dtype_size(m->ops->act_dtype);
    const ShardLayout *sh = &m->shard; // this rank's heads and MLP columns
    size_t d = (size_t)cfg->hidden_size, in = (size_t)sh->intermediate;
    size_t qd = (size_t)sh->n_heads * cfg->head_dim, kvd = (size_t)sh->n_kv_heads * cfg->head_dim;
    ws->h = carve(c, t * d * a);
    ws->x = carve(c, t * d * a);
    ws->delta = carve(c, t * d * a);
    ws->qkv = carve(c, t * (qd + 2 * kvd) * a);
    ws->q = carve(c, t * qd * a);
    ws->attn = carve(c, t * qd * a);
    ws->gate_up = carve(c, t * 2 * in * a);
    ws->act = carve(c, t * in * a);
    size_t r = (size_t)o->max_logit_rows;
    if (sh->tp == 1) {
        ws->logits = ws->logits_local = carve(c, r * (size_t)cfg->vocab_size * sizeof(float));
    } else { // each rank's slice, gathered into rank 0's full rows
        ws->logits_local = carve(c, r * (size_t)sh->vocab_len * sizeof(float));
        ws->logits = sh->rank == 0 ? carve(c, r * (size_t)cfg->vocab_size * sizeof(float)) : NULL;
    }
    // The batch region last and contiguous, so one upload moves it.
    ws->batch_offset = (c->used + 255) & ~(size_t)255;
    ws->tokens = carve(c, t * sizeof(int32_t));
    ws->positions = carve(c, t * sizeof(int32_t));
    ws->slots = carve(c, t * sizeof(int64_t));
    ws->q_start = carve(c, ((size_t)o->max_step_seqs + 1) * sizeof(int32_t));
    ws->ctx_len = carve(c, (size_t)o->max_step_seqs * sizeof(int32_t));
    ws->kv_indptr = carve(c, ((size_t)o->max_step_seqs + 1) * sizeof(int32_t));
    ws->kv_indices = carve(c, (size_t)m->max_kv_indices * sizeof(int32_t));
    ws->rows = carve(c, r * sizeof(int32_t));
    ws->temperature = carve(c, r * sizeof(float));
    ws->top_p = carve(c, r * sizeof(float));
    ws->top_k = carve(c, r * sizeof(int32_t));
    ws->seed = carve(c, r * sizeof(uint64_t));
    ws->counter = carve(c, r * sizeof(uint64_t));
    ws->batch_bytes = c->used - ws->batch_offset;
    ws->sampled = carve(c, r * sizeof(int32_t));
}

static MxStatus check_options(const ModelOptions *o) {
    if (o->block_size <= 0 || o->block_size > 1024) return mx_fail(MX_ERR_ARG, "block size %d not in [1, 1024]", o->block_size);
    if (o->kv_blocks < 0) return mx_fail(MX_ERR_ARG, "KV pool of %d blocks", o->kv_blocks);
    if (o->kv_blocks == 0 && !(o->kv_fraction > 0.0 && o->kv_fraction <= 1.0))
        return mx_fail(MX_ERR_ARG, "KV fraction %g not in (0, 1]", o->kv_fraction);
    if (o->max_step_tokens <= 0 || o->max_step_seqs <= 0 || o->max_logit_rows <= 0)
        return mx_fail(MX_ERR_ARG, "step capacities must be positive");
    if (o->max_step_tokens > (1 << 24) || o->max_step_seqs > (1 << 20) || o->max_logit_rows > (1 << 20))
        return mx_fail(MX_ERR_ARG, "step capacities are too large");
    if (o->tp < 1 || o->tp > SHARD_MAX_TP || o->rank < 0 || o->rank >= o->tp)
        return mx_fail(MX_ERR_ARG, "rank %d of tensor-parallel degree %d", o->rank, o->tp);
    if ((int64_t)o->kv_blocks * o->block_size > INT32_MAX)
        return mx_fail(MX_ERR_ARG, "KV pool of %d blocks x %d tokens is too large", o->kv_blocks, o->block_size);
    return MX_OK;
}

// Bytes of one KV block over all layers (K and V).
static uint64_t kv_block_bytes(const Model *m) {
    const ModelConfig *c = &m->cfg;
    return 2ull * (uint64_t)c->n_layers * (uint64_t)m->opt.block_size * (uint64_t)m->shard.n_kv_heads *
           (uint64_t)c->head_dim * dtype_size(m->ops->act_dtype);
}

// --kv-blocks, or --kv-fraction of what the backend has left (split between the models
// that share it), capped at what max_step_seqs sequences of the full context can use (more
// could never be live at once) plus block 0, the null block the engine never hands out.
MxStatus model_kv_budget(const Model *m, int sharers, int *blocks_out) {
    if (m->opt.kv_blocks > 0) {
        *blocks_out = m->opt.kv_blocks;
        return MX_OK;
    }
    uint64_t per_block = kv_block_bytes(m);
    int64_t cap = (int64_t)m->opt.max_step_seqs * blocks_for_tokens(m->cfg.max_positions, m->opt.block_size) + 1; // + the null block
    if (cap > INT32_MAX / m->opt.block_size) cap = INT32_MAX / m->opt.block_size;
    size_t free_bytes, total;
    MxStatus st = backend_memory(&m->backend, &free_bytes, &total);
    if (st) return st;
    double budget = (double)free_bytes * m->opt.kv_fraction;
    // On a GPU, graphs, lazily loaded kernels and cuBLAS need memory after the pool is taken:
    // even --kv-fraction 1 leaves them 512 MiB.
    const double device_reserve = 512.0 * 1048576.0;
    if (!m->ops->host_memory && budget > (double)free_bytes - device_reserve) budget = (double)free_bytes - device_reserve;
    budget /= sharers > 0 ? sharers : 1;
    int64_t blocks = (int64_t)(budget / (double)per_block);
    if (blocks > cap) blocks = cap;
    if (blocks < 1)
        return mx_fail(MX_ERR_NOMEM, "no memory left for the KV cache: %.1f MiB free, one block needs %.1f MiB",
                       (double)free_bytes / 1048576.0, (double)per_block / 1048576.0);
    *blocks_out = (int)blocks;
    return MX_OK;
}

static MxStatus alloc_kv(Model *m) {
    const ModelConfig *c = &m->cfg;
    uint64_t per_token;
    MxStatus st = model_config_kv_bytes_per_token(c, dtype_size(m->ops->act_dtype), &per_token);
    if (st) return st;
    size_t layer_bytes = (size_t)m->opt.kv_blocks * (size_t)m->opt.block_size * (size_t)m->shard.n_kv_heads *
                         (size_t)c->head_dim * dtype_size(m->ops->act_dtype);
    m->k_cache = mx_calloc((size_t)c->n_layers, sizeof *m->k_cache);
    m->v_cache = mx_calloc((size_t)c->n_layers, sizeof *m->v_cache);
    if (!m->k_cache || !m->v_cache) return mx_fail(MX_ERR_NOMEM, "KV cache tables");
    for (int l = 0; l < c->n_layers; l++) {
        m->k_cache[l] = m->ops->alloc(layer_bytes);
        m->v_cache[l] = m->ops->alloc(layer_bytes);
        if (!m->k_cache[l] || !m->v_cache[l])
            return mx_fail(MX_ERR_NOMEM, "KV cache: %d blocks of %d tokens (%llu bytes per layer)", m->opt.kv_blocks,
                           m->opt.block_size, (unsigned long long)layer_bytes * 2);
    }
    m->plan.kv_bytes = (uint64_t)layer_bytes * 2 * (uint64_t)c->n_layers;
    m->plan.kv_blocks = m->opt.kv_blocks;
    m->plan.block_size = m->opt.block_size;
    m->plan.kv_tokens = (int64_t)m->opt.kv_blocks * m->opt.block_size;
    return MX_OK;
}

static MxStatus alloc_workspace(Model *m) {
    // Each sequence of a step can reference at most the blocks of a full context (blocks
    // shared through the prefix cache are listed once per sequence, so the pool size is no
    // bound).
    int64_t per_seq = blocks_for_tokens(m->cfg.max_positions, m->opt.block_size);
    int64_t max_kv = (int64_t)m->opt.max_step_seqs * per_seq;
    if (max_kv > INT32_MAX / 4) return mx_fail(MX_ERR_ARG, "step capacities are too large for this context length");
    m->max_kv_indices = (int)max_kv;

    Carver sizer = {0};
    workspace_layout(&sizer, &m->ws, m);
    Carver real = {.base = m->ops->alloc(sizer.used)};
    if (!real.base) return mx_fail(MX_ERR_NOMEM, "activation workspace of %zu bytes", sizer.used);
    workspace_layout(&real, &m->ws, m);
    m->ws.base = real.base;
    m->ws.staging = m->ops->host_alloc(m->ws.batch_bytes);
    if (!m->ws.staging) return mx_fail(MX_ERR_NOMEM, "batch staging buffer of %zu bytes", m->ws.batch_bytes);
    m->plan.workspace_bytes = sizer.used;
    return MX_OK;
}

// Everything after the config: weights from dir's files (or dummy weights when dir is NULL)
// and the workspace; then the KV pool unless opt.defer_kv.
static MxStatus load_parts(Model *m, const char *dir) {
    MxStatus st = shard_layout(&m->cfg, m->opt.tp, m->opt.rank, &m->shard);
    if (st) return st;
    if ((st = backend_queue_create(&m->backend, m->opt.gemm, &m->queue))) return st;
    st = dir ? weights_load(dir, &m->cfg, &m->shard, m->ops, m->queue, m->opt.progress, &m->w)
             : weights_init_dummy(&m->cfg, &m->shard, m->ops, m->queue, 1234 + 7919 * (uint64_t)m->opt.rank,
                                  m->opt.progress, &m->w);
    if (st) return st;
    m->plan.weight_bytes = m->w.bytes;
    if ((st = alloc_workspace(m))) return st;
    // Graphs replay one rank's ops; at tp > 1 only with a comm that can be captured (forward.c).
    if (m->ops->capture_begin && !m->opt.no_graphs) {
        if ((st = model_batch_init(m, &m->graph_batch))) return st;
        m->graphs_enabled = true;
    }

    int half = m->cfg.head_dim / 2;
    float inv_freq[512];
    model_config_rope_inv_freq(&m->cfg, inv_freq);
    m->inv_freq = m->ops->alloc((size_t)half * sizeof(float));
    if (!m->inv_freq) return mx_fail(MX_ERR_NOMEM, "rope table");
    if (m->ops->upload(m->inv_freq, inv_freq, (size_t)half * sizeof(float), m->queue) != OPS_OK ||
        m->ops->sync(m->queue) != OPS_OK)
        return mx_fail(MX_ERR_OPS, "uploading the rope table");
    if (m->opt.defer_kv) return MX_OK;
    int blocks;
    if ((st = model_kv_budget(m, 1, &blocks))) return st;
    return model_alloc_kv(m, blocks);
}

MxStatus model_alloc_kv(Model *m, int blocks) {
    if (blocks < 1 || (int64_t)blocks * m->opt.block_size > INT32_MAX || m->k_cache)
        return mx_fail(MX_ERR_ARG, "KV pool of %d blocks", blocks);
    m->opt.kv_blocks = blocks;
    MxStatus st = block_pool_init(&m->pool, blocks);
    return st ? st : alloc_kv(m);
}

// The start of both loads: options checked, this thread bound to the backend's device, the
// backend recorded.
static MxStatus model_begin(Model *m, const Backend *backend, const ModelOptions *opt) {
    memset(m, 0, sizeof *m);
    MxStatus st = check_options(opt);
    if (!st) st = backend_bind_thread(backend);
    if (st) return st;
    m->backend = *backend;
    m->ops = backend->ops;
    m->opt = *opt;
    return MX_OK;
}

MxStatus model_load(const char *dir, const Backend *backend, const ModelOptions *opt, Model *m) {
    MxStatus st = model_begin(m, backend, opt);
    if (st) return st;
    if ((st = model_config_load(dir, &m->cfg))) {
        memset(m, 0, sizeof *m);
        return st;
    }
    if ((st = load_parts(m, dir))) model_free(m);
    return st;
}

MxStatus model_load_dummy(const ModelConfig *cfg, const Backend *backend, const ModelOptions *opt, Model *m) {
    MxStatus st = model_begin(m, backend, opt);
    if (st) return st;
    m->cfg = *cfg;
    if ((st = load_parts(m, NULL))) model_free(m);
    return st;
}

void model_drop_graphs(Model *m) {
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < MODEL_GRAPH_BUCKETS; i++) {
            if (m->graphs[k][i]) m->ops->graph_destroy(m->graphs[k][i]);
            m->graphs[k][i] = NULL;
        }
    m->graphs_enabled = false;
}

void model_free(Model *m) {
    if (m->ops) {
        if (m->queue) m->ops->sync(m->queue); // nothing may still be using what is freed below
        model_drop_graphs(m);
        for (int l = 0; m->k_cache && l < m->cfg.n_layers; l++) m->ops->free(m->k_cache[l]);
        for (int l = 0; m->v_cache && l < m->cfg.n_layers; l++) m->ops->free(m->v_cache[l]);
        m->ops->free(m->ws.base);
        m->ops->host_free(m->ws.staging);
        m->ops->free(m->inv_freq);
    }
    batch_destroy(&m->graph_batch);
    mx_free(m->k_cache);
    mx_free(m->v_cache);
    block_pool_destroy(&m->pool);
    weights_free(&m->w);
    if (m->ops && m->queue) m->ops->queue_destroy(m->queue);
    memset(m, 0, sizeof *m);
}

MxStatus model_batch_init(const Model *m, Batch *b) {
    return batch_init(b, m->opt.max_step_tokens, m->opt.max_step_seqs, m->max_kv_indices, m->opt.max_logit_rows);
}

// "1.5 GiB", "12.0 MiB", "64.0 KiB": three significant-ish digits in the largest unit.
static void human_bytes(uint64_t b, char *buf, size_t len) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void model_plan_describe(const MemoryPlan *p, char *buf, size_t len) {
    char w[32], ws[32], kv[32];
    human_bytes(p->weight_bytes, w, sizeof w);
    human_bytes(p->workspace_bytes, ws, sizeof ws);
    human_bytes(p->kv_bytes, kv, sizeof kv);
    snprintf(buf, len, "weights %s, workspace %s, KV %s = %d blocks x %d = %lld tokens", w, ws, kv, p->kv_blocks,
             p->block_size, (long long)p->kv_tokens);
}
