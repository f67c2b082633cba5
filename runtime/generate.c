// The simple multi-request driver (see generate.h).
#include "generate.h"

#include <string.h>

#include "alloc.h"
#include "clock.h"

typedef struct SeqState {
    int32_t *tokens; // prompt, then generated ids
    int n_tokens;    // prompt + generated so far
    int n_cached;    // tokens whose K/V are in the pages
    BlockTable table;
    Rng rng;
    bool done;
    int chunk;       // tokens this step
    int first_row;   // first logits row of this step, or -1
} SeqState;

// Blocks the requests hold at most, all running at once.
static long blocks_held(const GenRequest *reqs, int n, int block_size) {
    long total = 0;
    for (int i = 0; i < n; i++) total += blocks_for_tokens(reqs[i].n_prompt + reqs[i].max_tokens, block_size);
    return total;
}

int generate_blocks_needed(const GenRequest *reqs, int n, int block_size) {
    long total = blocks_held(reqs, n, block_size) + 1; // + the null block
    return total > INT32_MAX ? INT32_MAX : (int)total;
}

static MxStatus check_request(const Model *m, const GenRequest *r) {
    if (!r->prompt || r->n_prompt < 1) return mx_fail(MX_ERR_ARG, "empty prompt");
    if (r->max_tokens < 1) return mx_fail(MX_ERR_ARG, "max_tokens must be >= 1");
    if (r->n_stop_ids < 0 || (r->n_stop_ids > 0 && !r->stop_ids)) return mx_fail(MX_ERR_ARG, "bad stop id list");
    if (r->top_logprobs < 0 || r->top_logprobs > m->cfg.vocab_size)
        return mx_fail(MX_ERR_ARG, "top_logprobs must be in [0, %d]", m->cfg.vocab_size);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= m->cfg.vocab_size)
            return mx_fail(MX_ERR_TOKEN, "prompt token %d is not in [0, %d)", r->prompt[i], m->cfg.vocab_size);
    if ((long)r->n_prompt + r->max_tokens > m->cfg.max_positions)
        return mx_fail(MX_ERR_CONTEXT, "%d prompt + %d new tokens exceed max_position_embeddings %d", r->n_prompt,
                       r->max_tokens, m->cfg.max_positions);
    return sampling_check(&r->sampling);
}

static bool is_stop(const ModelConfig *c, const GenRequest *r, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return true;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    return false;
}

// Adds every unfinished sequence's next chunk that fits this step's budgets.
static MxStatus plan_step(Model *m, GenRequest *reqs, SeqState *seqs, int n, Batch *b, bool *has_prefill) {
    batch_clear(b);
    *has_prefill = false;
    for (int i = 0; i < n; i++) {
        SeqState *s = &seqs[i];
        s->chunk = 0;
        s->first_row = -1;
        if (s->done) continue;
        int pending = s->n_tokens - s->n_cached;
        int chunk = pending < b->max_tokens - b->n_tokens ? pending : b->max_tokens - b->n_tokens;
        bool all_rows = reqs[i].logits_out != NULL;
        if (all_rows && chunk > b->max_rows - b->n_rows) chunk = b->max_rows - b->n_rows;
        bool last = s->n_cached + chunk == s->n_tokens;
        if (!all_rows && last && b->n_rows == b->max_rows) chunk = 0;
        if (chunk <= 0 || b->n_seqs == b->max_seqs) continue;
        BatchLogits mode = all_rows ? BATCH_LOGITS_ALL : last ? BATCH_LOGITS_LAST : BATCH_LOGITS_NONE;

        MxStatus st = block_table_reserve(&s->table, &m->pool, m->opt.block_size, s->n_cached + chunk);
        if (st == MX_OK) {
            int rows_before = b->n_rows;
            st = batch_add(b, s->tokens + s->n_cached, chunk, s->n_cached, &s->table, m->opt.block_size, mode);
            if (mode != BATCH_LOGITS_NONE) s->first_row = rows_before;
        }
        if (st) return st;
        s->chunk = chunk;
        *has_prefill |= s->n_cached < reqs[i].n_prompt;
    }
    return b->n_seqs > 0 ? MX_OK : mx_fail(MX_ERR_ARG, "no sequence fits one step");
}

// Consumes the step's logits: records them, samples where a sequence reached its end.
static void finish_step(Model *m, GenRequest *reqs, SeqState *seqs, int n, const float *logits, Sampler *sampler) {
    int v = m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        SeqState *s = &seqs[i];
        GenRequest *r = &reqs[i];
        if (s->chunk == 0) continue;
        int start = s->n_cached;
        s->n_cached += s->chunk;
        if (s->first_row < 0) continue;
        int n_rows = r->logits_out ? s->chunk : 1;
        if (r->logits_out)
            memcpy(r->logits_out + (size_t)start * v, logits + (size_t)s->first_row * v, (size_t)n_rows * v * sizeof(float));
        if (s->n_cached < s->n_tokens) continue; // a prefill chunk that is not the last one

        const float *row = logits + (size_t)(s->first_row + n_rows - 1) * v;
        int k = r->top_logprobs;
        if (k > 0)
            sampler_top_logprobs(sampler, row, k, r->top_ids + (size_t)r->n_output * k,
                                 r->top_logprobs_out + (size_t)r->n_output * k);
        int32_t id = sampler_sample(sampler, row, &r->sampling, &s->rng);
        r->output[r->n_output++] = id;
        s->tokens[s->n_tokens++] = id;
        if (!r->ignore_eos && is_stop(&m->cfg, r, id)) r->finish = FINISH_EOS;
        else if (r->n_output == r->max_tokens) r->finish = FINISH_LENGTH;
        if (r->finish != FINISH_NONE) {
            s->done = true;
            block_table_release(&s->table, &m->pool);
        }
    }
}

static MxStatus alloc_outputs(GenRequest *r, SeqState *s) {
    size_t k = (size_t)r->top_logprobs, cap = (size_t)r->max_tokens;
    r->output = mx_malloc(cap * sizeof *r->output);
    s->tokens = mx_malloc(((size_t)r->n_prompt + cap) * sizeof *s->tokens);
    if (k) {
        r->top_ids = mx_malloc(cap * k * sizeof *r->top_ids);
        r->top_logprobs_out = mx_malloc(cap * k * sizeof *r->top_logprobs_out);
    }
    if (!r->output || !s->tokens || (k && (!r->top_ids || !r->top_logprobs_out)))
        return mx_fail(MX_ERR_NOMEM, "request buffers");
    memcpy(s->tokens, r->prompt, (size_t)r->n_prompt * sizeof *s->tokens);
    s->n_tokens = r->n_prompt;
    rng_seed(&s->rng, r->sampling.seed);
    return MX_OK;
}

static MxStatus run_steps(Model *m, GenRequest *reqs, SeqState *seqs, int n, GenStats *stats) {
    Batch batch;
    Sampler sampler;
    float *logits = mx_malloc((size_t)m->opt.max_logit_rows * (size_t)m->cfg.vocab_size * sizeof(float));
    MxStatus st = logits ? model_batch_init(m, &batch) : mx_fail(MX_ERR_NOMEM, "logits buffer");
    if (st) {
        mx_free(logits);
        return st;
    }
    if ((st = sampler_init(&sampler, m->cfg.vocab_size))) {
        batch_destroy(&batch);
        mx_free(logits);
        return st;
    }
    for (;;) {
        bool any = false, has_prefill;
        for (int i = 0; i < n; i++) any |= !seqs[i].done;
        if (!any) break;
        if ((st = plan_step(m, reqs, seqs, n, &batch, &has_prefill))) break;
        double t0 = mx_now_seconds();
        if ((st = model_forward(m, &batch, logits))) break;
        finish_step(m, reqs, seqs, n, logits, &sampler);
        double dt = mx_now_seconds() - t0;
        stats->steps++;
        if (has_prefill) {
            stats->prefill_seconds += dt;
            stats->prefill_tokens += batch.n_tokens;
        } else {
            stats->decode_seconds += dt;
            stats->decode_tokens += batch.n_tokens;
        }
    }
    sampler_destroy(&sampler);
    batch_destroy(&batch);
    mx_free(logits);
    return st;
}

MxStatus generate_run(Model *m, GenRequest *reqs, int n, GenStats *stats) {
    memset(stats, 0, sizeof *stats);
    MxStatus st = MX_OK;
    for (int i = 0; i < n && !st; i++) {
        reqs[i].output = reqs[i].top_ids = NULL;
        reqs[i].top_logprobs_out = NULL;
        reqs[i].n_output = 0;
        reqs[i].finish = FINISH_NONE;
        st = check_request(m, &reqs[i]);
    }
    if (st) return st;
    long needed = blocks_held(reqs, n, m->opt.block_size);
    if (needed > block_pool_available(&m->pool))
        return mx_fail(MX_ERR_KV_FULL, "%d requests need %ld KV blocks, %d are available", n, needed,
                       block_pool_available(&m->pool));

    SeqState *seqs = mx_calloc((size_t)n, sizeof *seqs);
    if (!seqs) return mx_fail(MX_ERR_NOMEM, "request states");
    for (int i = 0; i < n && !st; i++) st = alloc_outputs(&reqs[i], &seqs[i]);
    if (!st) st = run_steps(m, reqs, seqs, n, stats);
    for (int i = 0; i < n; i++) {
        block_table_release(&seqs[i].table, &m->pool);
        mx_free(seqs[i].tokens);
        if (st) gen_request_clear(&reqs[i]);
    }
    mx_free(seqs);
    return st;
}

void gen_request_clear(GenRequest *r) {
    mx_free(r->output);
    mx_free(r->top_ids);
    mx_free(r->top_logprobs_out);
    r->output = r->top_ids = NULL;
    r->top_logprobs_out = NULL;
    r->n_output = 0;
}
