// The engine behind myrmex.h: requests in, one model step at a time, tokens and text out.
//
// A step: the scheduler plans (decodes, prefill chunks, admissions, preemptions) → one
// varlen Batch → model_forward → the plan is committed (chunks computed, full blocks
// cached) → each sequence whose chunk reached its last token samples its next token →
// stop checks, text, callbacks → finished and aborted requests leave the scheduler, and
// their blocks return to the pool.
//
// A request's sequence keeps its prompt and every generated token, so a preempted request is
// simply recomputed from them; its next draw is keyed by (seed, token index), so the tokens
// are the same whatever it was batched with and however often it was preempted.
#include "engine.h"
#include "clock.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "cluster.h"
#include "json_util.h"
#include "model_presets.h"
#include "profile.h"
#include "stop.h"
#include "tokenizer.h"

typedef struct Request {
    int64_t id;
    Seq *seq;                 // prompt, then the generated ids
    SamplingParams sampling;
    int max_tokens, n_top;
    bool ignore_eos;
    int32_t *stop_ids;        // [n_stop_ids]
    int n_stop_ids;
    StopText stop;
    Detokenizer *detok;       // NULL without a tokenizer
    MxTokenCallback on_token;
    void *user;
    // Output (the ids are seq->tokens + seq->n_prompt).
    char *text;               // NUL-terminated, NULL without a tokenizer
    size_t text_len, text_cap;
    int32_t *top_ids;         // [top_cap, n_top]
    float *top_logprobs;      // [top_cap, n_top]
    int top_cap;
    float *token_lp;          // [max_tokens] each generated token's logprob; NULL unless asked
    float *prompt_lp;         // [n_prompt] prompt logprobs ([0] NaN); NULL unless asked
    int32_t *prompt_top_ids;  // [n_prompt, n_top]
    float *prompt_top_lp;     // [n_prompt, n_top]
    int n_scored;             // leading prompt_lp entries filled
    MxFinish finish;
    bool abort_pending;       // abort asked for inside a step
    double t_add, t_first, t_end;
} Request;

// A prompt-scoring chunk of one step: logits rows [row, row + n) are positions
// [from, from + n) of its sequence (row -1: the sequence scores nothing this step).
typedef struct StepScore {
    int row, from, n;
} StepScore;

struct MxEngine {
    MxEngineOptions opt;
    TpModel tp;               // the model's tensor-parallel ranks (tp 1: one model, no threads)
    Model *model;             // rank 0: config, block pool, memory plan
    Tokenizer *tok;
    Scheduler sched;
    Batch batch;
    float *logits;            // [max_rows, V] host f32, downloaded when a row wants logprobs
    Sampler sampler;          // top logprobs from those logits
    // The step's sample-op parameters and drawn tokens, per logits row [max_rows]
    // (max_rows = max_seqs + prompt_logprob_rows).
    float *temperature, *top_p;
    int32_t *top_k, *sampled;
    uint64_t *seed, *counter;
    int32_t eos[2 * MX_MAX_EOS + 32]; // config.json's and the tokenizer's eos ids
    int n_eos;
    Request **reqs;           // [n_reqs] sorted by id (ids only grow, so appends keep order)
    int n_reqs, reqs_cap;
    int64_t next_id;
    Seq **step_seqs;          // [max_seqs] this step's sequences ...
    int *step_rows;           // [max_seqs] ... and their logits row, or -1
    StepScore *step_score;    // [max_seqs] ... and their prompt-scoring rows
    int n_step;
    bool in_step;
    int n_abort_pending, n_finished;
    long tokens_generated;
    char plan[256];
};

MxEngineOptions mx_engine_options_default(void) {
    return (MxEngineOptions){.device = "auto", .gemm = NULL, .block_size = 16, .kv_blocks = 0, .kv_fraction = 0.9,
                             .max_batched_tokens = 512, .max_seqs = 64, .prefix_cache = true, .graphs = true,
                             .tokenizer = true, .prompt_logprob_rows = 128, .tp = 1, .comm = "auto",
                             .comm_timeout_s = 60.0};
}

MxRequestParams mx_request_params_default(void) {
    return (MxRequestParams){.max_tokens = 16, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
}

const char *mx_finish_name(MxFinish f) {
    switch (f) {
    case MX_FINISH_LENGTH: return "length";
    case MX_FINISH_STOP: return "stop";
    case MX_FINISH_ABORT: return "abort";
    case MX_FINISH_ERROR: return "error";
    default: return "";
    }
}

// ---- requests ----------------------------------------------------------------------------

static int find_index(const MxEngine *e, int64_t id) {
    int lo = 0, hi = e->n_reqs - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (e->reqs[mid]->id == id) return mid;
        if (e->reqs[mid]->id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static Request *find(const MxEngine *e, int64_t id) {
    int i = find_index(e, id);
    return i < 0 ? NULL : e->reqs[i];
}

static void request_free(Request *r) {
    if (!r) return;
    seq_free(r->seq);
    mx_free(r->stop_ids);
    stop_text_free(&r->stop);
    if (r->detok) detokenizer_free(r->detok);
    mx_free(r->text);
    mx_free(r->top_ids);
    mx_free(r->top_logprobs);
    mx_free(r->token_lp);
    mx_free(r->prompt_lp);
    mx_free(r->prompt_top_ids);
    mx_free(r->prompt_top_lp);
    mx_free(r);
}

static MxStatus check_params(const MxEngine *e, const int32_t *prompt, int n_prompt, const MxRequestParams *p) {
    const ModelConfig *c = &e->model->cfg;
    if (!prompt || n_prompt < 1) return mx_fail(MX_ERR_ARG, "empty prompt");
    if (p->max_tokens < 1) return mx_fail(MX_ERR_ARG, "max_tokens must be >= 1, got %d", p->max_tokens);
    SamplingParams sp = {.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .seed = p->seed};
    MxStatus st = sampling_check(&sp);
    if (st) return st;
    int max_top = c->vocab_size < MX_MAX_TOP_LOGPROBS ? c->vocab_size : MX_MAX_TOP_LOGPROBS;
    if (p->top_logprobs < 0 || p->top_logprobs > max_top)
        return mx_fail(MX_ERR_ARG, "top_logprobs must be in [0, %d], got %d", max_top, p->top_logprobs);
    if (p->n_stop_ids < 0 || p->n_stop_ids > MX_MAX_STOP_IDS || (p->n_stop_ids > 0 && !p->stop_ids))
        return mx_fail(MX_ERR_ARG, "stop ids: %d given, at most %d", p->n_stop_ids, MX_MAX_STOP_IDS);
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] < 0 || p->stop_ids[i] >= c->vocab_size)
            return mx_fail(MX_ERR_TOKEN, "stop id %d is not in [0, %d)", p->stop_ids[i], c->vocab_size);
    if (p->n_stop > 0 && !e->tok) return mx_fail(MX_ERR_ARG, "stop strings need the model's tokenizer.json");
    if (p->prompt_logprobs && e->opt.prompt_logprob_rows < 1)
        return mx_fail(MX_ERR_ARG, "prompt logprobs need an engine with prompt_logprob_rows >= 1");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return mx_fail(MX_ERR_TOKEN, "prompt token %d (at %d) is not in [0, %d)", prompt[i], i, c->vocab_size);
    if ((int64_t)n_prompt + p->max_tokens > c->max_positions)
        return mx_fail(MX_ERR_CONTEXT, "%d prompt + %d new tokens exceed the model's context of %d", n_prompt,
                       p->max_tokens, c->max_positions);
    return MX_OK;
}

// Everything but the scheduler: copies, the detokenizer primed with the prompt (so the
// first output token's text continues the prompt, e.g. SentencePiece's word-start space).
static MxStatus request_build(MxEngine *e, const int32_t *prompt, int n_prompt, const MxRequestParams *p, Request **out) {
    Request *r = mx_calloc(1, sizeof *r);
    if (!r) return mx_fail(MX_ERR_NOMEM, "request");
    *out = r;
    r->sampling = (SamplingParams){.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .seed = p->seed};
    r->max_tokens = p->max_tokens;
    r->n_top = p->top_logprobs;
    r->ignore_eos = p->ignore_eos;
    r->on_token = p->on_token;
    r->user = p->user;
    MxStatus st = seq_create(0, prompt, n_prompt, p->max_tokens, e->model->opt.block_size, &r->seq);
    if (st || (st = stop_text_init(&r->stop, p->stop, p->n_stop))) return st;
    r->seq->user = r;
    if (p->logprobs || p->top_logprobs > 0) {
        r->token_lp = mx_malloc((size_t)p->max_tokens * sizeof *r->token_lp);
        if (!r->token_lp) return mx_fail(MX_ERR_NOMEM, "token logprobs");
    }
    if (p->prompt_logprobs) {
        size_t n = (size_t)n_prompt, k = (size_t)p->top_logprobs;
        r->prompt_lp = mx_malloc(n * sizeof *r->prompt_lp);
        r->prompt_top_ids = mx_calloc(n * k + 1, sizeof *r->prompt_top_ids);
        r->prompt_top_lp = mx_calloc(n * k + 1, sizeof *r->prompt_top_lp);
        if (!r->prompt_lp || !r->prompt_top_ids || !r->prompt_top_lp) return mx_fail(MX_ERR_NOMEM, "prompt logprobs");
        for (size_t i = 0; i < n; i++) r->prompt_lp[i] = NAN;
        r->n_scored = 1; // nothing predicts the first token
        r->seq->score_prompt = true;
    }
    if (p->n_stop_ids > 0) {
        r->stop_ids = mx_malloc((size_t)p->n_stop_ids * sizeof *r->stop_ids);
        if (!r->stop_ids) return mx_fail(MX_ERR_NOMEM, "stop ids");
        memcpy(r->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof *r->stop_ids);
        r->n_stop_ids = p->n_stop_ids;
    }
    if (!e->tok) return MX_OK;
    r->text = mx_malloc(64);
    if (!r->text) return mx_fail(MX_ERR_NOMEM, "request text");
    r->text[0] = '\0';
    r->text_cap = 64;
    if ((st = detokenizer_new(e->tok, true, &r->detok))) return st;
    for (int i = 0; i < n_prompt; i++) {
        const char *piece;
        size_t len;
        if ((st = detokenizer_push(r->detok, prompt[i], &piece, &len))) return st;
    }
    return MX_OK;
}

MxStatus mx_engine_add(MxEngine *e, const int32_t *prompt, int n_prompt, const MxRequestParams *params, int64_t *id) {
    MxRequestParams defaults = mx_request_params_default();
    const MxRequestParams *p = params ? params : &defaults;
    if (id) *id = 0;
    if (!e || !id) return mx_fail(MX_ERR_ARG, "mx_engine_add needs an engine and an id pointer");
    if (e->tp.broken) return mx_fail(MX_ERR_COMM, "the model's tensor-parallel ranks failed; restart the engine");
    MxStatus st = check_params(e, prompt, n_prompt, p);
    if (st) return st;
    if (e->n_reqs == e->reqs_cap) {
        int cap = e->reqs_cap ? 2 * e->reqs_cap : 64;
        Request **reqs = mx_realloc(e->reqs, (size_t)cap * sizeof *reqs);
        if (!reqs) return mx_fail(MX_ERR_NOMEM, "request table of %d", cap);
        e->reqs = reqs;
        e->reqs_cap = cap;
    }
    Request *r = NULL;
    if ((st = request_build(e, prompt, n_prompt, p, &r)) || (st = sched_add(&e->sched, r->seq))) {
        request_free(r);
        return st;
    }
    r->id = r->seq->id = e->next_id++;
    r->t_add = mx_now_seconds();
    e->reqs[e->n_reqs++] = r;
    *id = r->id;
    return MX_OK;
}

// ---- output of one sampled token ---------------------------------------------------------

static MxStatus text_append(Request *r, const char *s, size_t n) {
    if (n == 0) return MX_OK;
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = r->text_cap;
        while (cap < r->text_len + n + 1) cap *= 2;
        char *t = mx_realloc(r->text, cap);
        if (!t) return mx_fail(MX_ERR_NOMEM, "output text of %zu bytes", cap);
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = '\0';
    return MX_OK;
}

// Detokenizer text through the stop strings into the output; *stopped on a match.
static MxStatus text_feed(Request *r, const char *piece, size_t len, bool *stopped) {
    const char *out;
    size_t n;
    MxStatus st = stop_text_push(&r->stop, piece, len, &out, &n, stopped);
    return st ? st : text_append(r, out, n);
}

// The end of the text: the detokenizer's carried bytes, then the stop strings' held tail.
static MxStatus text_end(Request *r, bool *stopped) {
    const char *piece;
    size_t len;
    MxStatus st = detokenizer_finish(r->detok, &piece, &len);
    if (!st) st = text_feed(r, piece, len, stopped);
    if (!st && !*stopped) {
        stop_text_flush(&r->stop, &piece, &len);
        st = text_append(r, piece, len);
    }
    return st;
}

static bool is_stop_id(const MxEngine *e, const Request *r, int32_t id) {
    for (int i = 0; !r->ignore_eos && i < e->n_eos; i++)
        if (e->eos[i] == id) return true;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    return false;
}

// Appends the token's text and decides whether the request ends with it.
static MxStatus token_text(MxEngine *e, Request *r, int32_t id, int n_out, MxFinish *finish) {
    bool stopped = false;
    MxStatus st = MX_OK;
    if (is_stop_id(e, r, id)) {
        *finish = MX_FINISH_STOP; // the stop id's own text is not output
        if (r->detok) st = text_end(r, &stopped);
        return st;
    }
    if (r->detok) {
        const char *piece;
        size_t len;
        if (!(st = detokenizer_push(r->detok, id, &piece, &len))) st = text_feed(r, piece, len, &stopped);
    }
    if (!st && !stopped && n_out == r->max_tokens) {
        *finish = MX_FINISH_LENGTH;
        if (r->detok) st = text_end(r, &stopped);
    }
    if (stopped) *finish = MX_FINISH_STOP;
    return st;
}

static MxStatus record_top(MxEngine *e, Request *r, const float *logits, int index) {
    if (r->n_top == 0) return MX_OK;
    if (index >= r->top_cap) {
        int cap = r->top_cap ? 2 * r->top_cap : 16;
        if (cap > r->max_tokens) cap = r->max_tokens;
        int32_t *ids = mx_realloc(r->top_ids, (size_t)cap * r->n_top * sizeof *ids);
        if (ids) r->top_ids = ids;
        float *lp = mx_realloc(r->top_logprobs, (size_t)cap * r->n_top * sizeof *lp);
        if (lp) r->top_logprobs = lp;
        if (!ids || !lp) return mx_fail(MX_ERR_NOMEM, "top logprobs");
        r->top_cap = cap;
    }
    size_t at = (size_t)index * r->n_top;
    sampler_top_logprobs(&e->sampler, logits, r->n_top, r->top_ids + at, r->top_logprobs + at);
    return MX_OK;
}

static void emit(Request *r, int32_t token, int index, size_t text_from, MxFinish finish) {
    if (!r->on_token) return;
    bool top = token >= 0 && r->n_top > 0 && index < r->top_cap; // not when recording them failed
    MxTokenEvent ev = {
        .request = r->id, .token = token, .index = index,
        .text = r->text ? r->text + text_from : NULL, .text_len = r->text ? r->text_len - text_from : 0,
        .top_ids = top ? r->top_ids + (size_t)index * r->n_top : NULL,
        .top_logprobs = top ? r->top_logprobs + (size_t)index * r->n_top : NULL,
        .n_top = top ? r->n_top : 0, .logprob = token >= 0 && r->token_lp ? r->token_lp[index] : NAN, .finish = finish};
    r->on_token(r->user, &ev);
}

static void finish_request(MxEngine *e, Request *r, MxFinish finish) {
    sched_remove(&e->sched, r->seq);
    r->finish = finish;
    r->t_end = mx_now_seconds();
    if (r->abort_pending) {
        r->abort_pending = false;
        e->n_abort_pending--;
    }
    e->n_finished++;
}

// Appends r's next token, drawn by the backend's sample op (logits: its row, present when r
// wants top logprobs), and handles everything that follows.
static void take_token(MxEngine *e, Request *r, int32_t id, const float *logits) {
    Seq *q = r->seq;
    int index = q->n_tokens - q->n_prompt;
    seq_append(q, id);
    e->tokens_generated++;
    if (index == 0) r->t_first = mx_now_seconds();
    size_t text_from = r->text_len;
    MxFinish finish = MX_FINISH_NONE;
    if (r->token_lp) r->token_lp[index] = sampler_logprob(&e->sampler, logits, id);
    MxStatus st = record_top(e, r, logits, index);
    if (!st) st = token_text(e, r, id, index + 1, &finish);
    if (st) finish = MX_FINISH_ERROR; // out of memory for this request's output only
    if (finish != MX_FINISH_NONE) finish_request(e, r, finish);
    emit(r, id, index, text_from, finish);
}

// ---- the step ----------------------------------------------------------------------------

// Fills the batch from the scheduler's plan, and for each logits row the sample op's
// parameters: token i of a request is drawn with counter i, so batching and preemption
// never change it. A prompt-scoring chunk has a row per token; those before its last are
// only scored (drawn greedily, and ignored). *want_logits: some row wants logprobs (its
// logits come back too).
static MxStatus build_batch(MxEngine *e, bool *want_logits) {
    const Scheduler *s = &e->sched;
    batch_clear(&e->batch);
    e->n_step = 0;
    *want_logits = false;
    for (int i = 0; i < s->n_plan; i++) {
        Seq *q = s->plan[i];
        bool logits = seq_wants_logits(q), score = q->n_score_rows > 0;
        int row = e->batch.n_rows;
        BatchLogits mode = score ? BATCH_LOGITS_ALL : logits ? BATCH_LOGITS_LAST : BATCH_LOGITS_NONE;
        MxStatus st = batch_add(&e->batch, q->tokens + q->n_computed, q->n_new, q->n_computed, &q->table,
                                s->cfg.block_size, mode);
        if (st) return st; // the scheduler keeps to the batch's capacities: a bug if reached
        e->step_score[e->n_step] = (StepScore){.row = score ? row : -1, .from = q->n_computed, .n = q->n_new};
        if (score) {
            for (int j = row; j < row + q->n_new; j++) {
                e->temperature[j] = 0.0f;
                e->top_p[j] = 1.0f;
                e->top_k[j] = 0;
                e->seed[j] = e->counter[j] = 0;
            }
            row += q->n_new - 1; // the last token's row samples, as a LAST row would
            *want_logits = true;
        }
        e->step_seqs[e->n_step] = q;
        e->step_rows[e->n_step++] = logits ? row : -1;
        if (!logits) continue;
        const Request *r = q->user;
        e->temperature[row] = r->sampling.temperature;
        e->top_p[row] = r->sampling.top_p;
        e->top_k[row] = r->sampling.top_k;
        e->seed[row] = r->sampling.seed;
        e->counter[row] = (uint64_t)(q->n_tokens - q->n_prompt);
        *want_logits |= r->n_top > 0 || r->token_lp;
    }
    return MX_OK;
}

// Records the prompt logprobs of a scoring chunk: the row of position p predicts token p + 1.
static void record_prompt(MxEngine *e, Request *r, const StepScore *sc) {
    const Seq *q = r->seq;
    int vocab = e->model->cfg.vocab_size;
    for (int j = 0; j < sc->n && sc->from + j + 1 < q->n_prompt; j++) {
        int at = sc->from + j + 1;
        const float *logits = e->logits + (size_t)(sc->row + j) * vocab;
        r->prompt_lp[at] = sampler_logprob(&e->sampler, logits, q->tokens[at]);
        size_t k = (size_t)r->n_top;
        sampler_top_logprobs(&e->sampler, logits, r->n_top, r->prompt_top_ids + at * k, r->prompt_top_lp + at * k);
        if (at + 1 > r->n_scored) r->n_scored = at + 1;
    }
    if (q->n_computed >= q->n_prompt) r->seq->score_prompt = false; // scored; recomputes need no rows
}

static void apply_pending_aborts(MxEngine *e) {
    for (int i = 0; i < e->n_reqs && e->n_abort_pending > 0; i++) {
        Request *r = e->reqs[i];
        if (r->abort_pending) {
            finish_request(e, r, MX_FINISH_ABORT);
            emit(r, -1, r->seq->n_tokens - r->seq->n_prompt, r->text_len, MX_FINISH_ABORT);
        }
    }
}

// Ends every waiting and running request with MX_FINISH_ERROR, each with its final event
// (the model's ranks failed; see tp_model.h). The error of the failed step stays current.
static void fail_all(MxEngine *e) {
    char why[512];
    MxStatus code = mx_last_status();
    snprintf(why, sizeof why, "%s", mx_last_detail());
    e->in_step = true;
    for (int i = 0; i < e->n_reqs; i++) {
        Request *r = e->reqs[i];
        if (r->finish != MX_FINISH_NONE) continue;
        finish_request(e, r, MX_FINISH_ERROR);
        emit(r, -1, r->seq->n_tokens - r->seq->n_prompt, r->text_len, MX_FINISH_ERROR);
    }
    e->in_step = false;
    mx_fail(code, "%s", why);
}

MxStatus mx_engine_step(MxEngine *e) {
    if (!e) return mx_fail(MX_ERR_ARG, "no engine");
    if (e->in_step) return mx_fail(MX_ERR_ARG, "mx_engine_step called from a callback");
    MxStatus st = sched_schedule(&e->sched);
    if (st) return st;
    if (e->sched.n_plan == 0) {
        // Every queued request fits the pool alone (checked at add), so something always runs;
        // an empty plan with work left would make a caller's step loop spin forever.
        if (mx_engine_has_work(e))
            return mx_fail(MX_ERR_KV_FULL, "no request could be scheduled (%d waiting, %d running)",
                           sched_waiting(&e->sched), sched_running(&e->sched));
        return MX_OK;
    }
    bool want_logits;
    StepSampling sampling = {.temperature = e->temperature, .top_p = e->top_p, .top_k = e->top_k,
                             .seed = e->seed, .counter = e->counter};
    long step = e->sched.stats.steps; // this step's number, 1-based (--profile-steps counts these)
    profile_step_begin(step);
    PROFILE_PUSH(0, "step %ld: %d seqs", step, e->sched.n_plan);
    if (!(st = build_batch(e, &want_logits)))
        st = tp_model_forward_sample(&e->tp, &e->batch, &sampling, e->sampled, want_logits ? e->logits : NULL);
    PROFILE_POP();
    profile_step_end(step);
    if (st == MX_ERR_COMM) fail_all(e); // the ranks are out of step: nothing can run any more
    if (st) return st;
    sched_commit(&e->sched);
    int vocab = e->model->cfg.vocab_size;
    e->in_step = true;
    for (int i = 0; i < e->n_step; i++) {
        Request *r = e->step_seqs[i]->user;
        int row = e->step_rows[i];
        if (e->step_score[i].row >= 0) record_prompt(e, r, &e->step_score[i]);
        if (row >= 0 && r->finish == MX_FINISH_NONE)
            take_token(e, r, e->sampled[row], want_logits ? e->logits + (size_t)row * vocab : NULL);
    }
    e->in_step = false;
    apply_pending_aborts(e);
#ifndef NDEBUG
    engine_check(e);
#endif
    return MX_OK;
}

bool mx_engine_has_work(const MxEngine *e) {
    return e && (sched_running(&e->sched) > 0 || sched_waiting(&e->sched) > 0);
}

MxStatus mx_engine_abort(MxEngine *e, int64_t id) {
    Request *r = e ? find(e, id) : NULL;
    if (!r) return mx_fail(MX_ERR_ARG, "no request %lld", (long long)id);
    if (r->finish != MX_FINISH_NONE || r->abort_pending) return MX_OK;
    if (e->in_step) { // the step still holds this sequence; it goes when the step ends
        r->abort_pending = true;
        e->n_abort_pending++;
        return MX_OK;
    }
    finish_request(e, r, MX_FINISH_ABORT);
    emit(r, -1, r->seq->n_tokens - r->seq->n_prompt, r->text_len, MX_FINISH_ABORT);
    return MX_OK;
}

MxStatus mx_engine_release(MxEngine *e, int64_t id) {
    int i = e ? find_index(e, id) : -1;
    if (i < 0) return mx_fail(MX_ERR_ARG, "no request %lld", (long long)id);
    if (e->in_step) return mx_fail(MX_ERR_ARG, "mx_engine_release called from a callback; abort instead");
    Request *r = e->reqs[i];
    if (r->finish == MX_FINISH_NONE) {
        if (r->abort_pending) e->n_abort_pending--;
        sched_remove(&e->sched, r->seq);
    } else {
        e->n_finished--;
    }
    request_free(r);
    memmove(e->reqs + i, e->reqs + i + 1, (size_t)(e->n_reqs - i - 1) * sizeof *e->reqs);
    e->n_reqs--;
    return MX_OK;
}

MxStatus mx_engine_output(const MxEngine *e, int64_t id, MxOutput *out) {
    memset(out, 0, sizeof *out);
    const Request *r = e ? find(e, id) : NULL;
    if (!r) return mx_fail(MX_ERR_ARG, "no request %lld", (long long)id);
    const Seq *q = r->seq;
    double end = r->finish != MX_FINISH_NONE ? r->t_end : mx_now_seconds();
    int n_out = q->n_tokens - q->n_prompt;
    bool top = r->n_top > 0 && r->top_cap >= n_out; // not when recording them failed (out of memory)
    *out = (MxOutput){.tokens = q->tokens + q->n_prompt, .n_tokens = n_out, .text = r->text, .text_len = r->text_len,
                      .top_ids = top ? r->top_ids : NULL, .top_logprobs = top ? r->top_logprobs : NULL,
                      .n_top = top ? r->n_top : 0, .token_logprobs = r->token_lp, .prompt_logprobs = r->prompt_lp,
                      .prompt_top_ids = r->prompt_lp ? r->prompt_top_ids : NULL,
                      .prompt_top_logprobs = r->prompt_lp ? r->prompt_top_lp : NULL, .n_prompt_scored = r->n_scored,
                      .finish = r->finish, .n_prompt = q->n_prompt,
                      .n_cached_prompt = q->n_cached_prompt, .n_preemptions = q->n_preemptions,
                      .first_token_seconds = r->t_first > 0 ? r->t_first - r->t_add : 0,
                      .total_seconds = end - r->t_add};
    return MX_OK;
}

void mx_engine_stats(const MxEngine *e, MxEngineStats *s) {
    memset(s, 0, sizeof *s);
    if (!e) return;
    const BlockPool *pool = &e->model->pool;
    const SchedStats *ss = &e->sched.stats;
    *s = (MxEngineStats){.running = sched_running(&e->sched), .waiting = sched_waiting(&e->sched),
                         .finished = e->n_finished, .steps = ss->steps, .preemptions = ss->preemptions,
                         .blocks_total = block_pool_total(pool), .blocks_free = block_pool_free_count(pool),
                         .blocks_live = block_pool_live_count(pool), .blocks_cached = block_pool_cached_count(pool),
                         .tokens_computed = ss->tokens_computed, .tokens_cached = ss->prefix_hit_tokens,
                         .tokens_queried = ss->prefix_query_tokens, .tokens_generated = e->tokens_generated,
                         .prefix_evictions = pool->evictions};
    if (ss->prefix_query_tokens > 0) s->prefix_hit_rate = (double)ss->prefix_hit_tokens / (double)ss->prefix_query_tokens;
}

void mx_engine_info(const MxEngine *e, MxEngineInfo *info) {
    memset(info, 0, sizeof *info);
    if (!e) return;
    const Model *m = e->model;
    *info = (MxEngineInfo){.device = m->backend.desc, .memory_plan = e->plan, .vocab_size = m->cfg.vocab_size,
                           .max_context = m->cfg.max_positions, .block_size = m->opt.block_size,
                           .kv_blocks = block_pool_total(&m->pool), .max_batched_tokens = e->sched.cfg.max_batched_tokens,
                           .max_seqs = e->sched.cfg.max_seqs, .prompt_logprob_rows = e->opt.prompt_logprob_rows,
                           .prefix_cache = e->sched.cfg.prefix_cache,
                           .has_tokenizer = e->tok != NULL, .weight_bytes = m->plan.weight_bytes,
                           .workspace_bytes = m->plan.workspace_bytes, .kv_bytes = m->plan.kv_bytes,
                           .device_index = m->backend.device};
}

// Whether local rank r is the first on its device (the host counts as one device), so that
// figures summed over the ranks' devices count each once.
static bool first_on_device(const MxEngine *e, int r) {
    for (int q = 0; q < r; q++)
        if (e->tp.ranks[q].backend.device == e->tp.ranks[r].backend.device) return false;
    return true;
}

int mx_engine_devices(const MxEngine *e, int *devices, int cap) {
    int n = 0;
    for (int r = 0; e && r < e->tp.n_local; r++) {
        int d = e->tp.ranks[r].backend.device;
        if (d < 0 || !first_on_device(e, r)) continue;
        if (n < cap) devices[n] = d;
        n++;
    }
    return n;
}

MxStatus mx_engine_device_memory(const MxEngine *e, size_t *used_bytes, size_t *total_bytes) {
    *used_bytes = *total_bytes = 0;
    if (!e) return mx_fail(MX_ERR_ARG, "no engine");
    MxStatus st = MX_OK;
    for (int r = 0; r < e->tp.n_local && !st; r++) {
        const Backend *b = &e->tp.ranks[r].backend;
        size_t free_bytes = 0, total = 0;
        if (!first_on_device(e, r)) continue;
        if ((st = backend_bind_thread(b))) break;
        if (backend_memory(b, &free_bytes, &total) != MX_OK || free_bytes > total) {
            st = mx_fail(MX_ERR_DEVICE, "cannot read the memory of %s", b->desc);
        } else {
            *used_bytes += total - free_bytes;
            *total_bytes += total;
        }
    }
    MxStatus bound = backend_bind_thread(&e->model->backend); // back on rank 0's device
    return st ? st : bound;
}

const Model *engine_model(const MxEngine *e) { return e->model; }
const Scheduler *engine_scheduler(const MxEngine *e) { return &e->sched; }

void engine_check(const MxEngine *e) {
    sched_check(&e->sched);
    int finished = 0, pending = 0;
    for (int i = 0; i < e->n_reqs; i++) {
        const Request *r = e->reqs[i];
        MX_ASSERT(i == 0 || e->reqs[i - 1]->id < r->id);
        MX_ASSERT((r->finish != MX_FINISH_NONE) == (r->seq->state == SEQ_DONE));
        MX_ASSERT(r->seq->n_tokens - r->seq->n_prompt <= r->max_tokens);
        finished += r->finish != MX_FINISH_NONE;
        pending += r->abort_pending;
    }
    MX_ASSERT(finished == e->n_finished && pending == e->n_abort_pending);
    MX_ASSERT(e->n_reqs - finished == sched_running(&e->sched) + sched_waiting(&e->sched));
}

// ---- create and destroy ------------------------------------------------------------------

static MxStatus check_options(const MxEngineOptions *o) {
    if (o->block_size < 1 || o->block_size > 1024) return mx_fail(MX_ERR_ARG, "block size %d not in [1, 1024]", o->block_size);
    if (o->kv_blocks < 0 || o->kv_blocks >= INT32_MAX / o->block_size)
        return mx_fail(MX_ERR_ARG, "KV pool of %d blocks", o->kv_blocks);
    if (o->kv_blocks == 0 && !(o->kv_fraction > 0.0 && o->kv_fraction <= 1.0))
        return mx_fail(MX_ERR_ARG, "KV fraction %g not in (0, 1]", o->kv_fraction);
    if (o->max_batched_tokens < 1 || o->max_batched_tokens > (1 << 24))
        return mx_fail(MX_ERR_ARG, "max batched tokens %d not in [1, %d]", o->max_batched_tokens, 1 << 24);
    if (o->max_seqs < 1 || o->max_seqs > (1 << 16)) return mx_fail(MX_ERR_ARG, "max seqs %d not in [1, %d]", o->max_seqs, 1 << 16);
    if (o->tp < 1 || o->tp > SHARD_MAX_TP) return mx_fail(MX_ERR_ARG, "--tp %d not in [1, %d]", o->tp, SHARD_MAX_TP);
    if (!(o->comm_timeout_s > 0 && o->comm_timeout_s <= 86400))
        return mx_fail(MX_ERR_ARG, "comm timeout %g s not in (0, 86400]", o->comm_timeout_s);
    if (o->prompt_logprob_rows < 0 || o->prompt_logprob_rows > (1 << 16))
        return mx_fail(MX_ERR_ARG, "prompt logprob rows %d not in [0, %d]", o->prompt_logprob_rows, 1 << 16);
    return MX_OK;
}

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat sb;
    return (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) < sizeof path && stat(path, &sb) == 0;
}

static void add_eos(MxEngine *e, int32_t id) {
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == id) return;
    if (e->n_eos < (int)(sizeof e->eos / sizeof *e->eos)) e->eos[e->n_eos++] = id;
}

// The config of dummy weights: a preset name, or a config.json file or its directory.
static MxStatus dummy_config(const char *spec, ModelConfig *cfg) {
    struct stat sb;
    if (stat(spec, &sb) != 0) return model_preset_config(spec, cfg); // names the presets
    if (S_ISDIR(sb.st_mode)) return model_config_load(spec, cfg);
    char *text = NULL;
    size_t len = 0;
    MxStatus st = json_read_file(spec, 1 << 20, &text, &len);
    if (!st) st = model_config_parse(text, len, cfg);
    mx_free(text);
    return st;
}

static MxStatus load_model(MxEngine *e, const char *dir, const Backend *backend, const ModelOptions *mo) {
    const MxEngineOptions *o = &e->opt;
    TpOptions to = {.tp = o->tp, .comm = o->comm, .timeout_s = o->comm_timeout_s};
    ModelConfig cfg;
    MxStatus st = dir ? MX_OK : dummy_config(o->dummy, &cfg);
    if (!st) st = tp_model_load(dir, dir ? NULL : &cfg, backend, mo, &to, &e->tp);
    if (st) return st;
    e->model = tp_leader(&e->tp);
    char plan[sizeof e->plan - 64];
    model_plan_describe(&e->model->plan, plan, sizeof plan);
    if (o->tp > 1) snprintf(e->plan, sizeof e->plan, "tp %d over %s, per rank: %s", o->tp, e->tp.comm_name, plan);
    else snprintf(e->plan, sizeof e->plan, "%s", plan);
    return MX_OK;
}

static MxStatus create_parts(MxEngine *e, const char *dir) {
    const MxEngineOptions *o = &e->opt;
    Backend backend;
    MxStatus st = backend_open(o->device ? o->device : "auto", &backend);
    if (st) return st;
    ModelOptions mo = model_options_default();
    mo.block_size = o->block_size;
    mo.kv_blocks = o->kv_blocks ? o->kv_blocks + 1 : 0; // + the pool's null block
    mo.kv_fraction = o->kv_fraction;
    mo.max_step_tokens = o->max_batched_tokens;
    mo.max_step_seqs = o->max_seqs;
    mo.max_logit_rows = o->max_seqs + o->prompt_logprob_rows; // one per sequence + prompt scoring
    mo.gemm = o->gemm;
    mo.no_graphs = !o->graphs;
    mo.progress = o->load_progress;
    if ((st = load_model(e, dir, &backend, &mo))) return st;
    const ModelConfig *c = &e->model->cfg;
    if (o->tokenizer && dir && file_exists(dir, "tokenizer.json") && (st = tokenizer_load(dir, c->vocab_size, &e->tok)))
        return st;
    for (int i = 0; i < c->n_eos; i++) add_eos(e, c->eos_ids[i]);
    if (e->tok) {
        const int32_t *ids;
        int n = tokenizer_eos(e->tok, &ids);
        for (int i = 0; i < n; i++) add_eos(e, ids[i]);
    }
    SchedConfig sc = {.block_size = o->block_size, .max_batched_tokens = o->max_batched_tokens, .max_seqs = o->max_seqs,
                      .max_kv_indices = e->model->max_kv_indices, .max_score_rows = o->prompt_logprob_rows,
                      .prefix_cache = o->prefix_cache};
    if ((st = sched_init(&e->sched, &e->model->pool, &sc)) || (st = model_batch_init(e->model, &e->batch)) ||
        (st = sampler_init(&e->sampler, c->vocab_size)))
        return st;
    size_t n = (size_t)o->max_seqs, rows = (size_t)e->model->opt.max_logit_rows;
    e->logits = mx_malloc(rows * (size_t)c->vocab_size * sizeof *e->logits);
    e->step_seqs = mx_calloc(n, sizeof *e->step_seqs);
    e->step_rows = mx_calloc(n, sizeof *e->step_rows);
    e->step_score = mx_calloc(n, sizeof *e->step_score);
    e->temperature = mx_calloc(rows, sizeof *e->temperature);
    e->top_p = mx_calloc(rows, sizeof *e->top_p);
    e->top_k = mx_calloc(rows, sizeof *e->top_k);
    e->sampled = mx_calloc(rows, sizeof *e->sampled);
    e->seed = mx_calloc(rows, sizeof *e->seed);
    e->counter = mx_calloc(rows, sizeof *e->counter);
    if (!e->logits || !e->step_seqs || !e->step_rows || !e->step_score || !e->temperature || !e->top_p || !e->top_k ||
        !e->sampled || !e->seed || !e->counter)
        return mx_fail(MX_ERR_NOMEM, "engine step buffers");
    return MX_OK;
}

MxStatus mx_engine_create(const char *dir, const MxEngineOptions *opt, MxEngine **out) {
    *out = NULL;
    MxEngineOptions defaults = mx_engine_options_default();
    if (!opt) opt = &defaults;
    if (!dir && !opt->dummy) return mx_fail(MX_ERR_ARG, "no model directory");
    if (dir && opt->dummy) return mx_fail(MX_ERR_ARG, "a model directory and dummy weights: give one");
    profile_init();
    MxStatus st = check_options(opt);
    if (st) return st;
    MxEngine *e = mx_calloc(1, sizeof *e);
    if (!e) return mx_fail(MX_ERR_NOMEM, "engine");
    e->opt = *opt;
    e->next_id = 1;
    if ((st = create_parts(e, dir))) {
        mx_engine_destroy(e);
        return st;
    }
    if (e->tp.cluster && cluster_rank() > 0) { // a follower process: mirror process 0 until it stops
        st = tp_model_follow(&e->tp);
        mx_engine_destroy(e);
        return st ? st : MX_FOLLOWER_DONE;
    }
    *out = e;
    return MX_OK;
}

void mx_engine_destroy(MxEngine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) {
        if (e->reqs[i]->finish == MX_FINISH_NONE) sched_remove(&e->sched, e->reqs[i]->seq);
        request_free(e->reqs[i]);
    }
    mx_free(e->reqs);
    sched_destroy(&e->sched);
    batch_destroy(&e->batch);
    sampler_destroy(&e->sampler);
    mx_free(e->logits);
    mx_free(e->temperature);
    mx_free(e->top_p);
    mx_free(e->top_k);
    mx_free(e->sampled);
    mx_free(e->seed);
    mx_free(e->counter);
    mx_free(e->step_seqs);
    mx_free(e->step_rows);
    mx_free(e->step_score);
    if (e->tok) tokenizer_free(e->tok);
    tp_model_free(&e->tp);
    mx_free(e);
}
