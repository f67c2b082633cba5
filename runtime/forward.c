// The transformer forward over one varlen batch, written once against the Ops table.
//
//   h = embed(tokens)
//   per layer:  x = rmsnorm(h)                    (fused: h += delta of the previous block)
//               qkv = x Wqkv ; q = rope(q) ; write rope(k), v to pages
//               delta = attention(q, pages) Wo
//               x = rmsnorm(h += delta)
//               gate|up = x Wgate|up ; delta = (silu(gate) * up) Wdown
//   x = final_norm(h += delta) ; logits = x[rows] Wlm
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"
#include "model.h"
#include "profile.h"

#define OPS_CALL(call, what)                                                                  \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != OPS_OK) return mx_fail(MX_ERR_OPS, "%s (%s backend, code %d)", what, m->ops->name, rc_); \
    } while (0)

MxStatus model_check_batch(const Model *m, const Batch *b) {
    if (b->n_tokens <= 0 || b->n_tokens > m->opt.max_step_tokens || b->n_seqs <= 0 ||
        b->n_seqs > m->opt.max_step_seqs || b->n_rows < 0 || b->n_rows > m->opt.max_logit_rows ||
        b->n_kv_indices > m->max_kv_indices)
        return mx_fail(MX_ERR_ARG, "batch of %d tokens, %d sequences, %d logit rows is over capacity", b->n_tokens,
                       b->n_seqs, b->n_rows);
    for (int t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->cfg.vocab_size)
            return mx_fail(MX_ERR_TOKEN, "token %d is not in [0, %d)", b->tokens[t], m->cfg.vocab_size);
    for (int s = 0; s < b->n_seqs; s++)
        if (b->ctx_len[s] > m->cfg.max_positions)
            return mx_fail(MX_ERR_CONTEXT, "context of %d tokens, the model's limit is %d", b->ctx_len[s],
                           m->cfg.max_positions);
    for (int i = 0; i < b->n_kv_indices; i++)
        if (b->kv_indices[i] < 0 || b->kv_indices[i] >= m->opt.kv_blocks)
            return mx_fail(MX_ERR_ARG, "block id %d out of range", b->kv_indices[i]);
    // The structure the device kernels trust without checking: offsets that start at 0, only
    // grow and end at the totals; each sequence's new tokens at the end of its context, with
    // blocks for all of it; slots in the pool (or < 0: not written); logits rows in range.
    if (b->q_start[0] != 0 || b->q_start[b->n_seqs] != b->n_tokens || b->kv_indptr[0] != 0 ||
        b->kv_indptr[b->n_seqs] != b->n_kv_indices)
        return mx_fail(MX_ERR_ARG, "batch offsets do not match its totals");
    for (int s = 0; s < b->n_seqs; s++) // first all offsets in range, then what they index
        if (b->q_start[s + 1] < b->q_start[s] || b->q_start[s + 1] > b->n_tokens ||
            b->kv_indptr[s + 1] < b->kv_indptr[s] || b->kv_indptr[s + 1] > b->n_kv_indices)
            return mx_fail(MX_ERR_ARG, "batch offsets of sequence %d are out of order", s);
    const int bs = m->opt.block_size;
    const int64_t n_slots = (int64_t)m->opt.kv_blocks * bs;
    for (int s = 0; s < b->n_seqs; s++) {
        int n_q = b->q_start[s + 1] - b->q_start[s], n_blocks = b->kv_indptr[s + 1] - b->kv_indptr[s];
        if (n_q < 0 || n_blocks < 0 || b->ctx_len[s] < n_q || n_blocks < (b->ctx_len[s] + bs - 1) / bs)
            return mx_fail(MX_ERR_ARG, "batch sequence %d: %d new tokens, context %d, %d blocks", s, n_q,
                           b->ctx_len[s], n_blocks);
        for (int t = b->q_start[s]; t < b->q_start[s + 1]; t++)
            if (b->positions[t] != b->ctx_len[s] - n_q + (t - b->q_start[s]) || b->slot_mapping[t] >= n_slots)
                return mx_fail(MX_ERR_ARG, "batch token %d: position %d, slot %lld", t, b->positions[t],
                               (long long)b->slot_mapping[t]);
    }
    for (int r = 0; r < b->n_rows; r++)
        if (b->logits_rows[r] < 0 || b->logits_rows[r] >= b->n_tokens)
            return mx_fail(MX_ERR_ARG, "logits row %d is not a token of the batch", b->logits_rows[r]);
    return MX_OK;
}

// Where a workspace buffer of the batch region sits in the staging buffer.
static void *staged(const Workspace *ws, const void *dev) {
    return ws->staging + ((size_t)((const char *)dev - (const char *)ws->base) - ws->batch_offset);
}

// The sample op's parameters for rows [0, n_real) from s, and greedy defaults for the
// padding rows [n_real, n_rows) of a graph bucket, written into the staging buffer.
static void stage_sampling(const Workspace *ws, const StepSampling *s, int n_real, int n_rows) {
    float *temperature = staged(ws, ws->temperature), *top_p = staged(ws, ws->top_p);
    int32_t *top_k = staged(ws, ws->top_k);
    uint64_t *seed = staged(ws, ws->seed), *counter = staged(ws, ws->counter);
    for (int r = 0; r < n_rows; r++) {
        bool real = r < n_real;
        temperature[r] = real ? s->temperature[r] : 0.0f;
        top_p[r] = real ? s->top_p[r] : 1.0f;
        top_k[r] = real ? s->top_k[r] : 0;
        seed[r] = real ? s->seed[r] : 0;
        counter[r] = real ? s->counter[r] : 0;
    }
}

// Packs the batch (and the sampling parameters of n_sample rows, the first n_real from
// sampling; none when sampling is NULL) into the staging buffer, laid out like the
// workspace's batch region, and moves the region with one upload.
static MxStatus upload_batch(Model *m, const Batch *b, const StepSampling *sampling, int n_real, int n_sample) {
    const Workspace *ws = &m->ws;
    struct { void *dst; const void *src; size_t bytes; } parts[] = {
        {ws->tokens, b->tokens, (size_t)b->n_tokens * sizeof(int32_t)},
        {ws->positions, b->positions, (size_t)b->n_tokens * sizeof(int32_t)},
        {ws->slots, b->slot_mapping, (size_t)b->n_tokens * sizeof(int64_t)},
        {ws->q_start, b->q_start, ((size_t)b->n_seqs + 1) * sizeof(int32_t)},
        {ws->ctx_len, b->ctx_len, (size_t)b->n_seqs * sizeof(int32_t)},
        {ws->kv_indptr, b->kv_indptr, ((size_t)b->n_seqs + 1) * sizeof(int32_t)},
        {ws->kv_indices, b->kv_indices, (size_t)b->n_kv_indices * sizeof(int32_t)},
        {ws->rows, b->logits_rows, (size_t)b->n_rows * sizeof(int32_t)},
    };
    // The previous step's upload may still read the staging buffer until a sync.
    if (m->ops->sync(m->queue) != OPS_OK) return mx_fail(MX_ERR_OPS, "waiting for the previous step");
    size_t end = 0; // bytes of the region in use
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char *dst = staged(ws, parts[i].dst);
        if (parts[i].bytes) memcpy(dst, parts[i].src, parts[i].bytes);
        if ((size_t)(dst - ws->staging) + parts[i].bytes > end) end = (size_t)(dst - ws->staging) + parts[i].bytes;
    }
    if (sampling) {
        stage_sampling(ws, sampling, n_real, n_sample);
        end = ws->batch_bytes; // the sampling arrays close the region
    }
    if (m->ops->upload((char *)ws->base + ws->batch_offset, ws->staging, end, m->queue) != OPS_OK)
        return mx_fail(MX_ERR_OPS, "uploading the batch");
    return MX_OK;
}

static MxStatus gemm(Model *m, const void *x, Weight w, void *out, int rows, int n, int k) {
    GemmParams p = {.x = x, .w = w.data, .w_dtype = w.dtype, .out = out, .m = rows, .n = n, .k = k};
    PROFILE_PUSH(m->shard.rank, "gemm %dx%dx%d", rows, n, k);
    int rc = m->ops->gemm(&p, m->queue);
    PROFILE_POP();
    if (rc != OPS_OK) return mx_fail(MX_ERR_OPS, "gemm (%s backend, code %d)", m->ops->name, rc);
    return MX_OK;
}

// x = rmsnorm(h + delta) with h updated in place; or x = rmsnorm(h) when delta is NULL.
static MxStatus add_norm(Model *m, const void *delta, Weight w, int t) {
    Workspace *ws = &m->ws;
    RmsNormParams p = {.x = delta ? delta : ws->h, .residual = delta ? ws->h : NULL, .weight = w.data,
                       .weight_dtype = w.dtype, .out = ws->x, .n_rows = t, .dim = m->cfg.hidden_size,
                       .eps = m->cfg.rms_norm_eps};
    OPS_CALL(m->ops->rmsnorm(&p, m->queue), "rmsnorm");
    return MX_OK;
}

// The sizes a step's ops are launched with (a captured graph keeps them).
typedef struct StepShape {
    int n_tokens, n_seqs, n_rows;
    int max_q_len, max_ctx_len; // attention's launch bounds
} StepShape;

static StepShape batch_shape(const Batch *b) {
    StepShape sh = {.n_tokens = b->n_tokens, .n_seqs = b->n_seqs, .n_rows = b->n_rows};
    for (int s = 0; s < b->n_seqs; s++) {
        int n_q = b->q_start[s + 1] - b->q_start[s];
        if (n_q > sh.max_q_len) sh.max_q_len = n_q;
        if (b->ctx_len[s] > sh.max_ctx_len) sh.max_ctx_len = b->ctx_len[s];
    }
    return sh;
}

// h-sized partial sums of the ranks of a tensor-parallel model, summed on every rank.
static MxStatus all_reduce(Model *m, void *buf, int t) {
    if (!m->comm) return MX_OK;
    PROFILE_PUSH(m->shard.rank, "all_reduce %d tokens", t);
    MxStatus st = comm_all_reduce(m->comm, buf, (size_t)t * (size_t)m->cfg.hidden_size, m->ops->act_dtype, m->queue);
    PROFILE_POP();
    return st;
}

// Heads and MLP columns are this rank's (m->shard); with tp 1, the whole model's.
static MxStatus attention_block(Model *m, const StepShape *b, int l) {
    const ModelConfig *c = &m->cfg;
    const ShardLayout *sh = &m->shard;
    const LayerWeights *w = &m->w.layers[l];
    Workspace *ws = &m->ws;
    int t = b->n_tokens, d = c->hidden_size, qd = sh->n_heads * c->head_dim, kvd = sh->n_kv_heads * c->head_dim;
    MxStatus st = gemm(m, ws->x, w->wqkv, ws->qkv, t, qd + 2 * kvd, d);
    if (st) return st;

    RopeKvWriteParams rkv = {.qkv = ws->qkv, .q_out = ws->q, .k_cache = m->k_cache[l], .v_cache = m->v_cache[l],
                             .positions = ws->positions, .slot_mapping = ws->slots, .inv_freq = m->inv_freq,
                             .n_tokens = t, .n_q_heads = sh->n_heads, .n_kv_heads = sh->n_kv_heads,
                             .head_dim = c->head_dim, .block_size = m->opt.block_size, .num_blocks = m->opt.kv_blocks};
    OPS_CALL(m->ops->rope_kv_write(&rkv, m->queue), "rope_kv_write");
    AttentionParams att = {.q = ws->q, .k_cache = m->k_cache[l], .v_cache = m->v_cache[l], .out = ws->attn,
                           .q_start = ws->q_start, .ctx_len = ws->ctx_len, .kv_indptr = ws->kv_indptr,
                           .kv_indices = ws->kv_indices, .n_seqs = b->n_seqs, .n_tokens = t,
                           .n_q_heads = sh->n_heads, .n_kv_heads = sh->n_kv_heads, .head_dim = c->head_dim,
                           .block_size = m->opt.block_size, .num_blocks = m->opt.kv_blocks,
                           .sliding_window = c->sliding_window, .scale = 1.0f / sqrtf((float)c->head_dim),
                           .max_q_len = b->max_q_len, .max_ctx_len = b->max_ctx_len};
    OPS_CALL(m->ops->attention(&att, m->queue), "attention");
    if ((st = gemm(m, ws->attn, w->wo, ws->delta, t, d, qd))) return st;
    return all_reduce(m, ws->delta, t);
}

static MxStatus mlp_block(Model *m, int t, int l) {
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->w.layers[l];
    Workspace *ws = &m->ws;
    int in = m->shard.intermediate;
    MxStatus st = gemm(m, ws->x, w->w_gate_up, ws->gate_up, t, 2 * in, c->hidden_size);
    if (st) return st;
    SiluMulParams p = {.gate = ws->gate_up, .up = (char *)ws->gate_up + (size_t)in * dtype_size(m->ops->act_dtype),
                       .out = ws->act, .n_rows = t, .dim = in, .in_stride = 2 * in};
    OPS_CALL(m->ops->silu_mul(&p, m->queue), "silu_mul");
    if ((st = gemm(m, ws->act, w->w_down, ws->delta, t, c->hidden_size, in))) return st;
    return all_reduce(m, ws->delta, t);
}

// The sample op over the first n_rows rows of the full logits (rank 0 alone has them).
static MxStatus sample_rows(Model *m, int n_rows) {
    if (m->shard.rank != 0) return MX_OK;
    Workspace *ws = &m->ws;
    SampleParams sp = {.logits = ws->logits, .temperature = ws->temperature, .top_k = ws->top_k, .top_p = ws->top_p,
                       .seed = ws->seed, .counter = ws->counter, .out = ws->sampled, .n_rows = n_rows,
                       .vocab = m->cfg.vocab_size};
    OPS_CALL(m->ops->sample(&sp, m->queue), "sample");
    return MX_OK;
}

// Every op of one step, on the batch already in the workspace: embedding to logits, and
// with `sample` the sample op on them. A tensor-parallel rank computes its vocab slice of
// the logits; rank 0 gathers the full rows and alone samples.
static MxStatus run_step(Model *m, const StepShape *b, bool sample) {
    const ModelConfig *c = &m->cfg;
    Workspace *ws = &m->ws;
    int t = b->n_tokens;
    MxStatus st;
    EmbeddingParams emb = {.tokens = ws->tokens, .table = m->w.embed.data, .table_dtype = m->w.embed.dtype,
                           .out = ws->h, .n_tokens = t, .dim = c->hidden_size, .vocab = c->vocab_size};
    OPS_CALL(m->ops->embedding(&emb, m->queue), "embedding");
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->w.layers[l];
        PROFILE_PUSH(m->shard.rank, "layer %d", l);
        if ((st = add_norm(m, l ? ws->delta : NULL, w->attn_norm, t)) || (st = attention_block(m, b, l)) ||
            (st = add_norm(m, ws->delta, w->mlp_norm, t)) || (st = mlp_block(m, t, l))) {
            PROFILE_POP();
            return st;
        }
        PROFILE_POP();
    }
    if ((st = add_norm(m, ws->delta, m->w.final_norm, t))) return st;
    if (b->n_rows == 0) return MX_OK;
    LmHeadParams lm = {.hidden = ws->x, .rows = ws->rows, .w = m->w.lm_head.data, .w_dtype = m->w.lm_head.dtype,
                       .logits = ws->logits_local, .n_rows = b->n_rows, .n_tokens = t, .dim = c->hidden_size,
                       .vocab = m->shard.vocab_len};
    OPS_CALL(m->ops->lm_head(&lm, m->queue), "lm_head");
    if (m->comm && (st = comm_gather_vocab(m->comm, ws->logits_local, ws->logits, b->n_rows, c->vocab_size,
                                           m->shard.vocab_stride, m->queue)))
        return st;
    return sample ? sample_rows(m, b->n_rows) : MX_OK;
}

// ---- decode steps as graphs ---------------------------------------------------------------
//
// A decode step (one token per sequence, logits for each) launches ~10 ops per layer whose
// host launch cost is comparable to their GPU time at small batch. Such steps are padded
// to a bucket of 1, 2, 4, ... sequences and replayed from a graph captured the second time
// the bucket is seen. Padding sequences decode token 0 at position 0 into no slot (slot -1)
// reading one block of context; their rows are never downloaded. The attention bound is
// the model's context limit, so one graph serves every context length.

static int graph_bucket(int n_seqs) {
    int b = 0;
    while ((1 << b) < n_seqs) b++;
    return b;
}

static bool is_plain_decode(const Batch *b) {
    if (b->n_tokens != b->n_seqs || b->n_rows != b->n_seqs) return false;
    for (int s = 0; s < b->n_seqs; s++)
        if (b->logits_rows[s] != s) return false;
    return true;
}

// b padded to `size` sequences, into m->graph_batch.
static void pad_decode_batch(Model *m, const Batch *b, int size) {
    Batch *p = &m->graph_batch;
    size_t n = (size_t)b->n_seqs;
    memcpy(p->tokens, b->tokens, n * sizeof *p->tokens);
    memcpy(p->positions, b->positions, n * sizeof *p->positions);
    memcpy(p->slot_mapping, b->slot_mapping, n * sizeof *p->slot_mapping);
    memcpy(p->q_start, b->q_start, (n + 1) * sizeof *p->q_start);
    memcpy(p->ctx_len, b->ctx_len, n * sizeof *p->ctx_len);
    memcpy(p->kv_indptr, b->kv_indptr, (n + 1) * sizeof *p->kv_indptr);
    memcpy(p->kv_indices, b->kv_indices, (size_t)b->n_kv_indices * sizeof *p->kv_indices);
    memcpy(p->logits_rows, b->logits_rows, n * sizeof *p->logits_rows);
    int kv = b->n_kv_indices;
    for (int s = b->n_seqs; s < size; s++) {
        p->tokens[s] = 0, p->positions[s] = 0, p->slot_mapping[s] = -1;
        p->q_start[s + 1] = s + 1;
        p->ctx_len[s] = 1;
        p->kv_indices[kv++] = 0;
        p->kv_indptr[s + 1] = kv;
        p->logits_rows[s] = s;
    }
    p->n_tokens = p->n_seqs = p->n_rows = size;
    p->n_kv_indices = kv;
}

// Records sh's step into *graph; on failure leaves *graph NULL.
static MxStatus capture(Model *m, const StepShape *sh, bool sample, void **graph) {
    if (m->ops->capture_begin(m->queue) != OPS_OK) return mx_fail(MX_ERR_OPS, "starting a graph capture");
    MxStatus run = run_step(m, sh, sample);
    int rc = m->ops->capture_end(m->queue, graph);
    if (run == MX_OK && rc == OPS_OK) return MX_OK;
    if (rc == OPS_OK && *graph) m->ops->graph_destroy(*graph); // a partial step's graph
    *graph = NULL;
    return run ? run : mx_fail(MX_ERR_OPS, "ending a graph capture (e.g. a library call that cannot be captured)");
}

// Runs a plain decode step at its bucket's size: the first time op by op, so that libraries
// that set themselves up on first use (NCCL connects lazily) do so outside any capture; then
// from the bucket's graph. *used false when this step cannot use a bucket (the caller then
// runs it op by op at its own size).
//
// At tp > 1 each rank captures its own graph, and NCCL requires the ranks to capture
// together and to run a given collective the same way, captured or not. So every rank's
// graphs are keyed alike: only rank 0 samples, so there the sample op runs after the graph
// rather than inside it (one graph per bucket, whether rank 0 samples or not); and every
// rank takes the same branch here (the same batches, options and history). A rank whose
// capture fails fails the step rather than fall back alone.
static MxStatus forward_graph(Model *m, const Batch *b, const StepSampling *sampling, bool *used) {
    int bucket = graph_bucket(b->n_seqs), size = 1 << bucket;
    *used = false;
    bool sample_in_graph = sampling && !m->comm;
    int kind = sample_in_graph;
    if (!m->graphs_enabled || (m->comm && !comm_capturable(m->comm)) || !is_plain_decode(b) ||
        bucket >= MODEL_GRAPH_BUCKETS || size > m->opt.max_step_seqs || size > m->opt.max_step_tokens ||
        size > m->opt.max_logit_rows || b->n_kv_indices + (size - b->n_seqs) > m->max_kv_indices)
        return MX_OK;
    *used = true;
    pad_decode_batch(m, b, size);
    MxStatus st = upload_batch(m, &m->graph_batch, sampling, b->n_rows, size);
    if (st) return st;
    StepShape sh = {.n_tokens = size, .n_seqs = size, .n_rows = size, .max_q_len = 1,
                    .max_ctx_len = m->cfg.max_positions};
    void **graph = &m->graphs[kind][bucket];
    if (!*graph && !m->graph_warm[kind][bucket]) {
        m->graph_warm[kind][bucket] = true;
        return run_step(m, &sh, sampling != NULL);
    }
    if (!*graph && (st = capture(m, &sh, sample_in_graph, graph))) {
        m->graphs_enabled = false;
        if (!m->comm) { // one rank: this and later steps run op by op
            *used = false;
            return MX_OK;
        }
        if (st == MX_ERR_COMM) return st;
        char why[192];
        snprintf(why, sizeof why, "%s", mx_last_detail());
        return mx_fail(st, "rank %d: capturing the decode graph of %d sequences: %s (--graphs off runs decode steps "
                       "op by op)", m->shard.rank, size, why);
    }
    PROFILE_PUSH(m->shard.rank, "decode graph, bucket %d", size);
    int rc = m->ops->graph_launch(*graph, m->queue);
    PROFILE_POP();
    if (rc != OPS_OK) return mx_fail(MX_ERR_OPS, "replaying a decode graph");
    return sampling && !sample_in_graph ? sample_rows(m, size) : MX_OK;
}

// The step from a graph when it can, else op by op.
static MxStatus forward(Model *m, const Batch *b, const StepSampling *sampling) {
    MxStatus st = model_check_batch(m, b);
    if (st) return st;
    bool used;
    st = forward_graph(m, b, sampling, &used);
    if (st || used) return st;
    StepShape sh = batch_shape(b);
    if ((st = upload_batch(m, b, sampling, b->n_rows, b->n_rows))) return st;
    return run_step(m, &sh, sampling != NULL);
}

// Copies what the caller wants back to the host and waits for the step to finish.
static MxStatus finish_step(Model *m, const Batch *b, int32_t *tokens, float *logits) {
    size_t bytes = (size_t)b->n_rows * (size_t)m->cfg.vocab_size * sizeof(float);
    if (logits && bytes && m->ops->download(logits, m->ws.logits, bytes, m->queue) != OPS_OK)
        return mx_fail(MX_ERR_OPS, "downloading logits");
    if (tokens && b->n_rows &&
        m->ops->download(tokens, m->ws.sampled, (size_t)b->n_rows * sizeof(int32_t), m->queue) != OPS_OK)
        return mx_fail(MX_ERR_OPS, "downloading sampled tokens");
    if (m->comm) return comm_wait(m->comm, m->queue); // bounded: a hung rank cannot hang this one
    if (m->ops->sync(m->queue) != OPS_OK) return mx_fail(MX_ERR_OPS, "running the step");
    return MX_OK;
}

MxStatus model_forward(Model *m, const Batch *b, float *logits) {
    MxStatus st = forward(m, b, NULL);
    return st ? st : finish_step(m, b, NULL, logits);
}

MxStatus step_sampling_check(const StepSampling *sampling, int n_rows) {
    if (!sampling) return mx_fail(MX_ERR_ARG, "no sampling parameters");
    for (int r = 0; r < n_rows; r++)
        if (!isfinite(sampling->temperature[r]) || !(sampling->top_p[r] > 0.0f && sampling->top_p[r] <= 1.0f))
            return mx_fail(MX_ERR_ARG, "row %d: temperature %g, top_p %g", r, (double)sampling->temperature[r],
                           (double)sampling->top_p[r]);
    return MX_OK;
}

MxStatus model_forward_sample(Model *m, const Batch *b, const StepSampling *sampling, int32_t *tokens, float *logits) {
    if (!tokens) return mx_fail(MX_ERR_ARG, "model_forward_sample needs an output");
    MxStatus st = step_sampling_check(sampling, b->n_rows);
    if (st) return st;
    st = forward(m, b, b->n_rows ? sampling : NULL);
    return st ? st : finish_step(m, b, b->n_rows ? tokens : NULL, logits);
}
