// The engine end to end on the fixture models (tests/fixtures, made by transformers):
//
// - batched == alone: greedy outputs of a mix of prompt lengths, arrival steps, budgets
//   (chunks of 1 token, prompts longer than the budget), block sizes, sequence caps and
//   prefix caching on/off are identical to each request run alone, and alone equals
//   transformers' greedy continuation; on the CPU the top logprobs are bit-identical too;
// - prefix caching: requests sharing a long prefix give the same outputs with it on and
//   off, and the statistics show the cached tokens were not computed;
// - pressure: a pool of a few blocks forces preemptions, and every request still finishes
//   with the unpressured output;
// - sampling: seeded sampling gives the same tokens batched, alone and preempted;
// - abort storm: aborts at random points (waiting, mid-prefill, mid-decode, from callbacks)
//   leave 0 live blocks, with the invariants checked after every step;
// - stop conditions: max tokens, eos ids from config.json and generation_config.json, stop
//   ids, stop strings matched across tokens, and the streamed events;
// - bad requests and options: the named errors, nothing leaked (ASan build);
// - the CUDA devices of the ranks (mx_engine_devices), tp 1 and 2.
//
// gpu_test_engine.c includes this file with ENGINE_DEVICE "cuda": bf16 rounding depends on
// batch shapes there, so tokens are compared only up to the first step whose top-2 logprob
// gap is below GAP_MIN, and logprobs are not compared bit for bit.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "engine.h"
#include "kernels.h"
#include "myrmex.h"
#include "test_util.h"

#ifndef ENGINE_DEVICE
#define ENGINE_DEVICE "cpu"
#define GAP_MIN 0.0    // fp32 on the CPU: batch shapes change nothing, compare everything
#define EXACT_LOGPROBS 1
#endif

static const char *fixtures = "tests/fixtures";

// ---- fixture prompts ---------------------------------------------------------------------

enum { MAX_PROMPTS = 8, MAX_LEN = 128, MAX_OUT = 48 };

typedef struct Fixture {
    int n;
    int n_prompt[MAX_PROMPTS], n_gen[MAX_PROMPTS];
    int32_t ids[MAX_PROMPTS][MAX_LEN]; // prompt, then transformers' greedy continuation
} Fixture;

// The prompts and continuations of DIR/expected.bin (format in tests/fixtures/README.md).
static int fixture_load(const char *dir, Fixture *f) {
    memset(f, 0, sizeof *f);
    TestBytes b;
    if (test_read_file(test_path(dir, "expected.bin"), &b)) return -1;
    Cur c = {b.data, b.data + b.len, false};
    uint32_t magic = cur_u32(&c), version = cur_u32(&c), n = cur_u32(&c), vocab = cur_u32(&c);
    bool bad = magic != 0x5846584d || version != 1 || n > MAX_PROMPTS;
    for (uint32_t i = 0; !bad && i < n; i++) {
        uint32_t np = cur_u32(&c), ng = cur_u32(&c);
        bad = c.bad || np + ng > MAX_LEN || ng > MAX_OUT;
        for (uint32_t j = 0; !bad && j < np + ng; j++) f->ids[i][j] = (int32_t)cur_u32(&c);
        c.p += (size_t)(np + ng) * vocab * 4; // logits: not needed here
        f->n_prompt[i] = (int)np;
        f->n_gen[i] = (int)ng;
        f->n++;
    }
    free(b.data);
    return bad || c.bad ? -1 : 0;
}

static const char *variant(const char *name) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", fixtures, name);
    return dir;
}

// ---- running jobs ------------------------------------------------------------------------

typedef struct Job {
    int32_t prompt[MAX_LEN];
    int n_prompt;
    MxRequestParams p;
    int arrive;        // the step before which it is added
    int abort_at;      // the step before which it is aborted (-1: never)
    // Results.
    int64_t id;
    int32_t out[MAX_OUT];
    int n_out;
    float top[MAX_OUT][2]; // top-2 logprobs per token
    int32_t top_ids[MAX_OUT][2];
    MxFinish finish;
    int preemptions, cached_prompt;
    // From the callback.
    int events, final_events, event_tokens;
    char streamed[1024];
    size_t n_streamed;
    int abort_in_callback_at; // abort itself from its callback at this output index (-1: never)
    MxEngine *engine;
} Job;

static void on_token(void *user, const MxTokenEvent *ev) {
    Job *j = user;
    j->events++;
    if (ev->finish != MX_FINISH_NONE) j->final_events++;
    if (ev->token >= 0) {
        CHECK(ev->index == j->event_tokens);
        j->event_tokens++;
    }
    if (ev->text && j->n_streamed + ev->text_len < sizeof j->streamed) {
        memcpy(j->streamed + j->n_streamed, ev->text, ev->text_len);
        j->n_streamed += ev->text_len;
    }
    if (ev->token >= 0 && ev->index == j->abort_in_callback_at) CHECK_STATUS(mx_engine_abort(j->engine, j->id), MX_OK);
}

static MxEngineOptions options(int block_size, int budget, int max_seqs, int kv_blocks, bool prefix) {
    MxEngineOptions o = mx_engine_options_default();
    o.device = ENGINE_DEVICE;
    o.block_size = block_size;
    o.max_batched_tokens = budget;
    o.max_seqs = max_seqs;
    o.kv_blocks = kv_blocks;
    o.prefix_cache = prefix;
    return o;
}

static void collect(MxEngine *e, Job *j) {
    MxOutput out;
    CHECK_STATUS(mx_engine_output(e, j->id, &out), MX_OK);
    j->n_out = out.n_tokens < MAX_OUT ? out.n_tokens : MAX_OUT;
    memcpy(j->out, out.tokens, (size_t)j->n_out * sizeof *j->out);
    for (int i = 0; i < j->n_out && out.n_top == 2; i++) {
        memcpy(j->top[i], out.top_logprobs + 2 * i, sizeof j->top[i]);
        memcpy(j->top_ids[i], out.top_ids + 2 * i, sizeof j->top_ids[i]);
    }
    j->finish = out.finish;
    j->preemptions = out.n_preemptions;
    j->cached_prompt = out.n_cached_prompt;
    CHECK(out.finish != MX_FINISH_NONE);
    CHECK(j->final_events == (j->p.on_token ? 1 : 0));
    CHECK(!j->p.on_token || j->event_tokens == out.n_tokens);
}

// Runs jobs to completion on one engine; the invariants are checked after every step.
static void run_jobs(const char *dir, const MxEngineOptions *o, Job *jobs, int n, MxEngineStats *stats) {
    MxEngine *e;
    MxStatus st = mx_engine_create(dir, o, &e);
    CHECK_STATUS(st, MX_OK);
    if (st) return;
    int added = 0;
    for (int step = 0; step < 100000; step++) {
        for (int i = 0; i < n; i++) {
            Job *j = &jobs[i];
            j->engine = e;
            if (j->arrive == step) {
                CHECK_STATUS(mx_engine_add(e, j->prompt, j->n_prompt, &j->p, &j->id), MX_OK);
                added++;
            }
            if (j->abort_at == step && j->id) CHECK_STATUS(mx_engine_abort(e, j->id), MX_OK);
        }
        if (added == n && !mx_engine_has_work(e)) break;
        CHECK_STATUS(mx_engine_step(e), MX_OK);
        engine_check(e);
        MxEngineStats s;
        mx_engine_stats(e, &s);
        CHECK(s.blocks_free + s.blocks_live + s.blocks_cached == s.blocks_total);
    }
    CHECK(added == n && !mx_engine_has_work(e));
    for (int i = 0; i < n; i++) collect(e, &jobs[i]);
    mx_engine_stats(e, stats);
    CHECK(stats->blocks_live == 0 && stats->running == 0 && stats->waiting == 0);
    for (int i = 0; i < n; i++) CHECK_STATUS(mx_engine_release(e, jobs[i].id), MX_OK);
    mx_engine_stats(e, stats);
    CHECK(stats->finished == 0);
    mx_engine_destroy(e);
}

static void reset_results(Job *jobs, int n);

// Each job alone on a fresh engine (the reference for batching).
static void run_alone(const char *dir, Job *jobs, int n) {
    for (int i = 0; i < n; i++) {
        Job one = jobs[i];
        reset_results(&one, 1);
        one.arrive = 0;
        MxEngineOptions o = options(16, 512, 1, 0, false);
        o.kv_fraction = 0.01;
        MxEngineStats s;
        run_jobs(dir, &o, &one, 1, &s);
        CHECK(s.preemptions == 0);
        jobs[i] = one;
    }
}

// got matches want token for token, up to the first step whose top-2 gap in want is below
// GAP_MIN (after it the two may legitimately part on a GPU); on the CPU, logprobs too.
static bool same_output(const Job *want, const Job *got) {
    if (got->finish == MX_FINISH_ABORT || want->finish == MX_FINISH_ABORT) return true;
    for (int i = 0; i < want->n_out; i++) {
        if (i >= got->n_out || got->out[i] != want->out[i]) return false;
        if (EXACT_LOGPROBS && memcmp(got->top[i], want->top[i], sizeof got->top[i]) != 0) return false;
        if (want->top[i][0] - want->top[i][1] < GAP_MIN) return true;
    }
    return got->n_out == want->n_out && got->finish == want->finish;
}

// The fixture's four prompts and four made from them: a shared long prefix with another
// tail, a prefix of one, two joined (longer than most budgets), and a repeat.
static int make_jobs(const Fixture *f, Job *jobs, int max_tokens_cap) {
    int n = 0;
    for (int i = 0; i < f->n && n < MAX_PROMPTS; i++, n++) {
        Job *j = &jobs[n];
        memset(j, 0, sizeof *j);
        j->n_prompt = f->n_prompt[i];
        memcpy(j->prompt, f->ids[i], (size_t)j->n_prompt * sizeof *j->prompt);
        j->p = mx_request_params_default();
        j->p.max_tokens = f->n_gen[i] < max_tokens_cap ? f->n_gen[i] : max_tokens_cap;
    }
    const int last = f->n - 1; // the 40-token prompt
    static const int max_tokens[4] = {9, 1, 20, 5};
    for (int k = 0; k < 4 && n < MAX_PROMPTS; k++, n++) {
        Job *j = &jobs[n];
        memset(j, 0, sizeof *j);
        j->p = mx_request_params_default();
        j->p.max_tokens = max_tokens[k] < max_tokens_cap ? max_tokens[k] : max_tokens_cap;
        const int32_t *base = f->ids[last];
        int nb = f->n_prompt[last];
        if (k == 0) { // the long prompt and three more tokens of its own continuation
            j->n_prompt = nb + 3;
            memcpy(j->prompt, base, (size_t)j->n_prompt * sizeof *j->prompt);
        } else if (k == 1) { // its first 20 tokens
            j->n_prompt = 20;
            memcpy(j->prompt, base, 20 * sizeof *j->prompt);
        } else if (k == 2) { // prompt 2 then the long prompt
            j->n_prompt = f->n_prompt[2] + nb;
            memcpy(j->prompt, f->ids[2], (size_t)f->n_prompt[2] * sizeof *j->prompt);
            memcpy(j->prompt + f->n_prompt[2], base, (size_t)nb * sizeof *j->prompt);
        } else { // the same as the long prompt
            j->n_prompt = nb;
            memcpy(j->prompt, base, (size_t)nb * sizeof *j->prompt);
        }
    }
    for (int i = 0; i < n; i++) {
        jobs[i].abort_at = -1;
        jobs[i].abort_in_callback_at = -1;
        jobs[i].p.top_logprobs = 2;
        jobs[i].p.on_token = on_token;
        jobs[i].p.user = &jobs[i];
    }
    return n;
}

static void reset_results(Job *jobs, int n) {
    for (int i = 0; i < n; i++) {
        Job *j = &jobs[i];
        j->id = 0;
        j->n_out = j->events = j->final_events = j->event_tokens = 0;
        j->n_streamed = 0;
        j->finish = MX_FINISH_NONE;
        j->p.user = j;
    }
}

// ---- batched == alone --------------------------------------------------------------------

typedef struct Layout {
    const char *name;
    int block_size, budget, max_seqs, kv_blocks;
    bool prefix;
    int arrivals[MAX_PROMPTS];
    bool graphs_off; // every decode op launched (the others replay graphs where the backend has them)
} Layout;

static const Layout LAYOUTS[] = {
    {"all-at-once", 16, 512, 64, 0, true, {0, 0, 0, 0, 0, 0, 0, 0}, false},
    {"chunks-of-1", 1, 1, 8, 0, true, {0, 0, 3, 9, 14, 30, 31, 60}, false},
    {"budget-7-cap-3-no-prefix", 4, 7, 3, 0, false, {0, 1, 1, 2, 5, 5, 8, 13}, false},
    {"budget-16-blocks-of-3", 3, 16, 64, 0, true, {4, 0, 2, 0, 7, 1, 3, 11}, false},
    {"tight-pool", 4, 24, 8, 30, true, {0, 0, 0, 1, 1, 2, 2, 3}, false},
    {"staggered-graphs-off", 16, 512, 64, 0, true, {0, 1, 1, 2, 3, 5, 8, 13}, true},
};

static void test_batched_equals_alone(void) {
    static const char *const names[] = {"mha", "gqa", "odd", "mistral", "bf16"};
    for (size_t v = 0; v < sizeof names / sizeof *names; v++) {
        Fixture f;
        CHECK(fixture_load(variant(names[v]), &f) == 0);
        if (f.n == 0) continue;
        Job ref[MAX_PROMPTS], jobs[MAX_PROMPTS];
        int n = make_jobs(&f, ref, MAX_OUT);
        run_alone(variant(names[v]), ref, n);
        // Alone equals transformers' greedy continuation (eos never appears in those).
        for (int i = 0; i < f.n; i++) {
            Job want = {.n_out = f.n_gen[i], .finish = MX_FINISH_LENGTH};
            memcpy(want.out, f.ids[i] + f.n_prompt[i], (size_t)f.n_gen[i] * sizeof *want.out);
            bool same = ref[i].n_out == want.n_out && memcmp(ref[i].out, want.out, (size_t)want.n_out * 4) == 0;
            for (int k = 0; !same && k < ref[i].n_out; k++) // on a GPU: up to the first close call
                if (ref[i].out[k] != want.out[k] || ref[i].top[k][0] - ref[i].top[k][1] < GAP_MIN) {
                    same = ref[i].out[k] == want.out[k] || ref[i].top[k][0] - ref[i].top[k][1] < GAP_MIN;
                    break;
                }
            CHECK(same);
            if (!same) fprintf(stderr, "  %s prompt %d alone differs from transformers\n", names[v], i);
        }
        for (size_t l = 0; l < sizeof LAYOUTS / sizeof *LAYOUTS; l++) {
            const Layout *lay = &LAYOUTS[l];
            memcpy(jobs, ref, sizeof jobs);
            reset_results(jobs, n);
            for (int i = 0; i < n; i++) jobs[i].arrive = lay->arrivals[i];
            MxEngineOptions o = options(lay->block_size, lay->budget, lay->max_seqs, lay->kv_blocks, lay->prefix);
            o.kv_fraction = 0.01;
            o.graphs = !lay->graphs_off;
            MxEngineStats s;
            int before = test_failures;
            run_jobs(variant(names[v]), &o, jobs, n, &s);
            for (int i = 0; i < n; i++) {
                bool same = same_output(&ref[i], &jobs[i]);
                CHECK(same);
                if (!same) fprintf(stderr, "  %s %s prompt %d: batched output differs from alone\n", names[v], lay->name, i);
            }
            fprintf(stderr, "  %s %-8s %-26s %4ld steps, %3ld preemptions, %4ld tokens cached\n",
                    test_failures == before ? "ok  " : "FAIL", names[v], lay->name, s.steps, s.preemptions, s.tokens_cached);
            if (lay->kv_blocks) CHECK(s.preemptions > 0); // the tight pool did force preemptions
        }
    }
}

// ---- prefix caching ----------------------------------------------------------------------

static void test_prefix_cache(void) {
    Fixture f;
    CHECK(fixture_load(variant("mha"), &f) == 0);
    // Six requests share the 40-token prompt: the first and the last are exactly it, the
    // others add tails of 1..4 tokens. The first runs alone for two steps, so its five full
    // blocks of 8 are cached when the others arrive.
    Job jobs[6];
    const int base = f.n - 1, nb = f.n_prompt[base];
    for (int i = 0; i < 6; i++) {
        Job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        memcpy(j->prompt, f.ids[base], (size_t)nb * sizeof *j->prompt);
        int tail = i == 5 ? 0 : i;
        for (int k = 0; k < tail; k++) j->prompt[nb + k] = (int32_t)((7 * i + 3 * k) % 128);
        j->n_prompt = nb + tail;
        j->p = mx_request_params_default();
        j->p.max_tokens = 12;
        j->p.ignore_eos = true; // the same token counts whatever the values
        j->p.top_logprobs = 2;
        j->arrive = i == 0 ? 0 : 2;
        j->abort_at = j->abort_in_callback_at = -1;
    }
    Job off[6];
    memcpy(off, jobs, sizeof off);
    MxEngineStats on_stats, off_stats;
    MxEngineOptions o = options(8, 512, 16, 0, true);
    o.kv_fraction = 0.01;
    run_jobs(variant("mha"), &o, jobs, 6, &on_stats);
    o.prefix_cache = false;
    run_jobs(variant("mha"), &o, off, 6, &off_stats);
    for (int i = 0; i < 6; i++) CHECK(same_output(&off[i], &jobs[i]));
    // 40 shared tokens = 5 blocks of 8 for each request with a tail; the last one, with
    // none, takes 4: at least its last token must be computed for its logits.
    CHECK(off_stats.tokens_cached == 0 && off_stats.prefix_hit_rate == 0);
    CHECK(on_stats.tokens_cached == 4 * 40 + 32);
    CHECK(jobs[0].cached_prompt == 0 && jobs[1].cached_prompt == 40 && jobs[5].cached_prompt == 32);
    CHECK(on_stats.tokens_computed == off_stats.tokens_computed - on_stats.tokens_cached);
    CHECK(on_stats.prefix_hit_rate > 0.5);
    fprintf(stderr, "  prefix cache on: %ld tokens computed, %ld cached (hit rate %.2f); off: %ld computed\n",
            on_stats.tokens_computed, on_stats.tokens_cached, on_stats.prefix_hit_rate, off_stats.tokens_computed);
}

// ---- pressure and sampling ---------------------------------------------------------------

static void test_pressure_and_sampling(void) {
    Fixture f;
    CHECK(fixture_load(variant("gqa"), &f) == 0);
    Job ref[MAX_PROMPTS], jobs[MAX_PROMPTS];
    int n = make_jobs(&f, ref, 24);
    for (int i = 0; i < n; i++) { // seeded sampling, a different seed per request
        ref[i].p.temperature = 0.9f;
        ref[i].p.top_k = i % 2 ? 0 : 20;
        ref[i].p.top_p = i % 3 ? 1.0f : 0.9f;
        ref[i].p.seed = 1000 + (uint64_t)i;
    }
    run_alone(variant("gqa"), ref, n);
    // The largest request needs 18 blocks of 4 (53 + 20 - 1 tokens): the 18-block pool holds
    // it alone and nothing else.
    static const int pools[] = {0, 18, 24};
    long preemptions = 0;
    for (size_t k = 0; k < sizeof pools / sizeof *pools; k++) {
        memcpy(jobs, ref, sizeof jobs);
        reset_results(jobs, n);
        MxEngineOptions o = options(4, 32, 8, pools[k], k != 1);
        o.kv_fraction = 0.01;
        MxEngineStats s;
        run_jobs(variant("gqa"), &o, jobs, n, &s);
        int repreempted = 0;
        for (int i = 0; i < n; i++) {
            // On a GPU a sampled token may flip where batch shapes move a logit across the
            // draw's boundary; the determinism that matters is checked on the CPU.
            if (EXACT_LOGPROBS) CHECK(same_output(&ref[i], &jobs[i]) && jobs[i].finish == ref[i].finish);
            repreempted += jobs[i].preemptions;
        }
        CHECK(repreempted == s.preemptions);
        if (pools[k]) CHECK(s.preemptions > 0);
        preemptions += s.preemptions;
    }
    fprintf(stderr, "  sampled outputs identical alone, batched and under pressure (%ld preemptions)\n", preemptions);
}

// ---- abort storm -------------------------------------------------------------------------

static uint64_t rng_state = 88172645463325252ull;
static int rnd(int n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (int)(rng_state % (uint64_t)n);
}

static void test_abort_storm(void) {
    Fixture f;
    CHECK(fixture_load(variant("mha"), &f) == 0);
    enum { N = 48 };
    Job *jobs = calloc(N, sizeof *jobs);
    for (int i = 0; i < N; i++) {
        Job *j = &jobs[i];
        int src = rnd(f.n);
        j->n_prompt = 1 + rnd(f.n_prompt[src] + f.n_gen[src] - 1);
        memcpy(j->prompt, f.ids[src], (size_t)j->n_prompt * sizeof *j->prompt);
        j->p = mx_request_params_default();
        j->p.max_tokens = 1 + rnd(30);
        j->p.temperature = (float)rnd(2);
        j->p.seed = (uint64_t)i;
        j->p.on_token = on_token;
        j->p.user = j;
        j->arrive = rnd(40);
        j->abort_at = rnd(3) ? j->arrive + rnd(20) : -1; // before admission, mid-prefill, mid-decode
        j->abort_in_callback_at = rnd(4) == 0 ? rnd(8) : -1;
    }
    MxEngineOptions o = options(4, 12, 6, 40, true); // small budget: long prefills span steps
    MxEngineStats s;
    run_jobs(variant("mha"), &o, jobs, N, &s);
    int aborted = 0;
    for (int i = 0; i < N; i++) {
        aborted += jobs[i].finish == MX_FINISH_ABORT;
        CHECK(jobs[i].final_events == 1);
    }
    CHECK(aborted > N / 4 && s.blocks_live == 0);
    fprintf(stderr, "  %d of %d requests aborted; %ld preemptions; live blocks after: %d\n", aborted, N, s.preemptions,
            s.blocks_live);
    free(jobs);
}

// ---- stop conditions ---------------------------------------------------------------------

// A byte-level tokenizer whose 128 tokens are the bytes 0..127 (GPT-2's byte alphabet), so
// every id the mha fixture can produce decodes to one ASCII byte.
static char *tokenizer_json(void) {
    size_t cap = 16384, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b + n, cap - n,
                          "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
                          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
                          "\"use_regex\":false},\"post_processor\":null,"
                          "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
                          "\"use_regex\":false},\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                          "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,"
                          "\"byte_fallback\":false,\"vocab\":{");
    for (int byte = 0; byte < 128; byte++) {
        // GPT-2's map: printable ASCII is itself; 0..32 and 127 move to U+0100 and up.
        int cp = byte >= 33 && byte <= 126 ? byte : byte < 33 ? 256 + byte : 256 + 33;
        char ch[8];
        if (cp == '"' || cp == '\\') snprintf(ch, sizeof ch, "\\%c", cp);
        else if (cp < 128) snprintf(ch, sizeof ch, "%c", cp);
        else snprintf(ch, sizeof ch, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        n += (size_t)snprintf(b + n, cap - n, "%s\"%s\":%d", byte ? "," : "", ch, byte);
    }
    snprintf(b + n, cap - n, "},\"merges\":[]}}");
    return b;
}

// A copy of the mha fixture with the tokenizer above and optional config / generation
// config overrides.
static const char *model_with_tokenizer(const char *tag, int config_eos, int gen_eos) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_tmpdir(tag));
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        TestBytes b;
        CHECK(test_read_file(test_path(variant("mha"), files[i]), &b) == 0);
        if (i == 0 && config_eos >= 0) { // replace "eos_token_id": 2
            char *text = calloc(b.len + 64, 1), *at;
            memcpy(text, b.data, b.len);
            at = strstr(text, "\"eos_token_id\"");
            CHECK(at != NULL);
            if (at) {
                char *end = at + strcspn(at, ",}");
                char tail[4096];
                snprintf(tail, sizeof tail, "%s", end);
                sprintf(at, "\"eos_token_id\": %d%s", config_eos, tail);
            }
            CHECK(test_write_file(dir, files[i], text, strlen(text)) == 0);
            free(text);
        } else {
            CHECK(test_write_file(dir, files[i], b.data, b.len) == 0);
        }
        free(b.data);
    }
    char *tok = tokenizer_json();
    CHECK(test_write_file(dir, "tokenizer.json", tok, strlen(tok)) == 0);
    free(tok);
    if (gen_eos >= 0) {
        char gen[64];
        snprintf(gen, sizeof gen, "{\"eos_token_id\": [%d]}", gen_eos);
        CHECK(test_write_file(dir, "generation_config.json", gen, strlen(gen)) == 0);
    }
    return dir;
}

static void one_job(const char *dir, Job *j) {
    reset_results(j, 1);
    j->arrive = 0;
    j->abort_at = j->abort_in_callback_at = -1;
    MxEngineOptions o = options(16, 512, 4, 0, true);
    o.kv_fraction = 0.01;
    MxEngineStats s;
    run_jobs(dir, &o, j, 1, &s);
}

static void test_stop_conditions(void) {
    Fixture f;
    CHECK(fixture_load(variant("mha"), &f) == 0);
    const int src = 2; // 13-token prompt, 32-token continuation
    int32_t cont[32];  // this engine's greedy continuation: transformers' on the CPU
    Job j;
    memset(&j, 0, sizeof j);
    memcpy(j.prompt, f.ids[src], (size_t)f.n_prompt[src] * sizeof *j.prompt);
    j.n_prompt = f.n_prompt[src];
    j.p = mx_request_params_default();
    j.p.max_tokens = 32;
    j.p.on_token = on_token;
    j.p.user = &j;
    // Plain: 32 tokens, finish length; the text streamed equals the output's text.
    const char *dir = model_with_tokenizer("engine-tok", -1, -1);
    one_job(dir, &j);
    CHECK(j.n_out == 32 && j.finish == MX_FINISH_LENGTH);
    memcpy(cont, j.out, sizeof cont);
    if (EXACT_LOGPROBS) CHECK(memcmp(cont, f.ids[src] + f.n_prompt[src], sizeof cont) == 0);
    char full[64] = {0};
    for (int i = 0; i < 32; i++) full[i] = (char)cont[i]; // byte tokens: id == byte
    CHECK(j.n_streamed == 32 && memcmp(j.streamed, full, 32) == 0);
    // A stop id: the output ends with it, its text is not output.
    int k = 6;
    int32_t stop_id = cont[k];
    int first = 0;
    while (cont[first] != stop_id) first++;
    j.p.stop_ids = &stop_id;
    j.p.n_stop_ids = 1;
    one_job(dir, &j);
    CHECK(j.finish == MX_FINISH_STOP && j.n_out == first + 1 && j.out[first] == stop_id);
    CHECK(j.n_streamed == (size_t)first && memcmp(j.streamed, full, (size_t)first) == 0);
    j.p.n_stop_ids = 0;
    j.p.stop_ids = NULL;
    // A stop string spanning tokens 9 and 10: the text ends right before it, the tokens at
    // the one that completed it, and no event carried any part of it.
    char stop[3] = {full[9], full[10], 0};
    const char *stops[] = {stop, "never-appears"};
    int at = (int)(strstr(full, stop) - full);
    j.p.stop = stops;
    j.p.n_stop = 2;
    one_job(dir, &j);
    CHECK(j.finish == MX_FINISH_STOP && j.n_out == at + 2);
    CHECK(j.n_streamed == (size_t)at && memcmp(j.streamed, full, (size_t)at) == 0);
    j.p.n_stop = 1;
    stops[0] = "never-appears";
    one_job(dir, &j);
    CHECK(j.finish == MX_FINISH_LENGTH && j.n_streamed == 32 && memcmp(j.streamed, full, 32) == 0);
    j.p.stop = NULL;
    j.p.n_stop = 0;
    // eos from config.json, then from generation_config.json; ignore_eos runs past both.
    const char *eos_cfg = model_with_tokenizer("engine-eos-config", cont[4], -1);
    one_job(eos_cfg, &j);
    first = 0;
    while (cont[first] != cont[4]) first++;
    CHECK(j.finish == MX_FINISH_STOP && j.n_out == first + 1);
    const char *eos_gen = model_with_tokenizer("engine-eos-gen", -1, cont[7]);
    one_job(eos_gen, &j);
    first = 0;
    while (cont[first] != cont[7]) first++;
    CHECK(j.finish == MX_FINISH_STOP && j.n_out == first + 1);
    j.p.ignore_eos = true;
    one_job(eos_gen, &j);
    CHECK(j.finish == MX_FINISH_LENGTH && j.n_out == 32);
    // max_tokens 1.
    j.p.ignore_eos = false;
    j.p.max_tokens = 1;
    one_job(dir, &j);
    CHECK(j.finish == MX_FINISH_LENGTH && j.n_out == 1 && j.out[0] == cont[0] && j.events == 1);
}

// ---- bad input ---------------------------------------------------------------------------

static void test_errors(void) {
    MxEngine *e = NULL;
    MxEngineOptions o = options(4, 64, 4, 8, true); // 8 blocks of 4 = 32 token slots
    MxEngineOptions bad = o;
    bad.block_size = 0;
    CHECK_STATUS(mx_engine_create(variant("mha"), &bad, &e), MX_ERR_ARG);
    bad = o;
    bad.max_seqs = 0;
    CHECK_STATUS(mx_engine_create(variant("mha"), &bad, &e), MX_ERR_ARG);
    bad = o;
    bad.kv_blocks = 0;
    bad.kv_fraction = 1.5;
    CHECK_STATUS(mx_engine_create(variant("mha"), &bad, &e), MX_ERR_ARG);
    bad = o;
    bad.device = "tpu";
    CHECK_STATUS(mx_engine_create(variant("mha"), &bad, &e), MX_ERR_ARG);
    CHECK_STATUS(mx_engine_create(test_tmpdir("engine-empty"), &o, &e), MX_ERR_CONFIG_JSON);
    CHECK(e == NULL);
    CHECK_STATUS(mx_engine_create(variant("mha"), &o, &e), MX_OK);
    MxEngineInfo info;
    mx_engine_info(e, &info);
    CHECK(info.kv_blocks == 8 && info.block_size == 4 && info.vocab_size == 128 && !info.has_tokenizer);
    int32_t prompt[40] = {1, 2, 3}, out_of_vocab[2] = {1, 128};
    int64_t id = 99;
    MxRequestParams p = mx_request_params_default();
    p.max_tokens = 4;
    CHECK_STATUS(mx_engine_add(e, prompt, 0, &p, &id), MX_ERR_ARG);
    CHECK(id == 0);
    CHECK_STATUS(mx_engine_add(e, out_of_vocab, 2, &p, &id), MX_ERR_TOKEN);
    p.max_tokens = 0;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p.max_tokens = 256;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_CONTEXT); // 3 + 256 > 256 positions
    p.max_tokens = 30; // 3 + 30 - 1 = 32 slots fit; one more does not
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_OK);
    CHECK_STATUS(mx_engine_release(e, id), MX_OK);
    p.max_tokens = 31;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_KV_TOO_SMALL);
    p = mx_request_params_default();
    p.temperature = -1;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p.temperature = NAN;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p = mx_request_params_default();
    p.top_p = 0;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p = mx_request_params_default();
    p.top_logprobs = MX_MAX_TOP_LOGPROBS + 1;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p = mx_request_params_default();
    int32_t stop_ids[1] = {500};
    p.stop_ids = stop_ids;
    p.n_stop_ids = 1;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_TOKEN);
    p.n_stop_ids = MX_MAX_STOP_IDS + 1;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p = mx_request_params_default();
    const char *stops[] = {"x"};
    p.stop = stops;
    p.n_stop = 1; // no tokenizer in this directory
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    CHECK_STATUS(mx_engine_abort(e, 12345), MX_ERR_ARG);
    CHECK_STATUS(mx_engine_release(e, 12345), MX_ERR_ARG);
    MxOutput out;
    CHECK_STATUS(mx_engine_output(e, 12345, &out), MX_ERR_ARG);
    CHECK_STATUS(mx_engine_step(NULL), MX_ERR_ARG);
    // Nothing queued: a step does nothing.
    CHECK_STATUS(mx_engine_step(e), MX_OK);
    MxEngineStats s;
    mx_engine_stats(e, &s);
    CHECK(s.steps == 0 && s.blocks_live == 0 && s.blocks_free + s.blocks_cached == 8);
    // Allocation failures in add: clean, nothing queued, nothing leaked.
    p = mx_request_params_default();
    for (long k = 0; k < 8; k++) {
        mx_alloc_fail_after(k);
        MxStatus st = mx_engine_add(e, prompt, 3, &p, &id);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) {
            CHECK_STATUS(mx_engine_release(e, id), MX_OK);
            break;
        }
        CHECK_STATUS(st, MX_ERR_NOMEM);
    }
    mx_engine_stats(e, &s);
    CHECK(s.waiting == 0 && s.running == 0);
    engine_check(e);
    mx_engine_destroy(e);
    mx_engine_destroy(NULL);
}

// Every allocation of mx_engine_create fails in turn: each failure is clean (ASan: no leak).
static void test_create_nomem(void) {
    MxEngineOptions o = options(4, 64, 4, 8, true);
    int ok_at = -1;
    for (long k = 0; k < 20000 && ok_at < 0; k++) {
        MxEngine *e = NULL;
        mx_alloc_fail_after(k);
        MxStatus st = mx_engine_create(variant("mha"), &o, &e);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) {
            ok_at = (int)k;
            mx_engine_destroy(e);
        } else {
            CHECK(e == NULL);
            CHECK(st == MX_ERR_NOMEM || st == MX_ERR_CONFIG_JSON || st == MX_ERR_IO || st == MX_ERR_INDEX_JSON);
        }
    }
    CHECK(ok_at > 10);
    fprintf(stderr, "  mx_engine_create succeeds from allocation %d on; every earlier failure was clean\n", ok_at);
}

// Allocation failures inside steps (block tables, output text, top logprobs, the stop-string
// buffer): a step fails with MX_ERR_NOMEM and can be retried, or the one request whose
// output could not grow ends with MX_FINISH_ERROR; the invariants hold and nothing leaks.
static void test_step_nomem(void) {
    const char *dir = model_with_tokenizer("engine-nomem", -1, -1);
    MxEngineOptions o = options(4, 8, 4, 0, true);
    o.kv_fraction = 0.01;
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = 40 + i;
    int errors = 0, step_failures = 0;
    for (long k = 0; k < 40; k++) {
        MxEngine *e;
        CHECK_STATUS(mx_engine_create(dir, &o, &e), MX_OK);
        MxRequestParams p = mx_request_params_default();
        p.max_tokens = 24;
        p.top_logprobs = 3;
        const char *stops[] = {"~~~~"};
        p.stop = stops;
        p.n_stop = 1;
        int64_t ids[3];
        for (int r = 0; r < 3; r++) CHECK_STATUS(mx_engine_add(e, prompt + r, 20 - r, &p, &ids[r]), MX_OK);
        mx_alloc_fail_after(k);
        MxStatus st = MX_OK;
        for (int step = 0; step < 200 && mx_engine_has_work(e) && !st; step++) st = mx_engine_step(e);
        mx_alloc_fail_after(-1);
        if (st) {
            CHECK_STATUS(st, MX_ERR_NOMEM);
            step_failures++;
        }
        for (int step = 0; step < 200 && mx_engine_has_work(e); step++) CHECK_STATUS(mx_engine_step(e), MX_OK);
        engine_check(e);
        for (int r = 0; r < 3; r++) {
            MxOutput out;
            CHECK_STATUS(mx_engine_output(e, ids[r], &out), MX_OK);
            CHECK(out.finish == MX_FINISH_LENGTH || out.finish == MX_FINISH_STOP || out.finish == MX_FINISH_ERROR);
            CHECK(out.n_top == 0 || out.n_top == 3);
            errors += out.finish == MX_FINISH_ERROR;
            CHECK_STATUS(mx_engine_release(e, ids[r]), MX_OK);
        }
        MxEngineStats s;
        mx_engine_stats(e, &s);
        CHECK(s.blocks_live == 0);
        mx_engine_destroy(e);
    }
    CHECK(errors > 0 || step_failures > 0);
    fprintf(stderr, "  %d step failures, %d requests ended in error, all clean\n", step_failures, errors);
}

// The CUDA devices of the engine's ranks (what bench sums energy over): none on the CPU; on a
// GPU, the engine's own first and each device once (loopback ranks share one, nccl ranks
// take the next ones).
static void test_devices(void) {
    for (int tp = 1; tp <= 2; tp++) {
        MxEngineOptions o = options(4, 64, 4, 8, true);
        o.tp = tp;
        MxEngine *e = NULL;
        CHECK_STATUS(mx_engine_create(variant("gqa"), &o, &e), MX_OK);
        if (!e) return;
        MxEngineInfo info;
        mx_engine_info(e, &info);
        int dev[4] = {-9, -9, -9, -9};
        int n = mx_engine_devices(e, dev, 4);
        if (info.device_index < 0) {
            CHECK(n == 0 && dev[0] == -9);
        } else {
            CHECK(n >= 1 && n <= tp && dev[0] == info.device_index);
            CHECK(n < 2 || dev[1] == info.device_index + 1);
        }
        CHECK(mx_engine_devices(e, dev, 0) == n); // counted even where none fits
        mx_engine_destroy(e);
    }
    CHECK(mx_engine_devices(NULL, NULL, 0) == 0);
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    MxEngineOptions probe = options(16, 16, 1, 4, false);
    MxEngine *e = NULL;
    if (mx_engine_create(variant("mha"), &probe, &e) == MX_ERR_DEVICE) {
        fprintf(stderr, "skipped: no %s device (%s)\n", ENGINE_DEVICE, mx_last_error());
        return 77;
    }
    mx_engine_destroy(e);
    RUN(test_batched_equals_alone);
    RUN(test_prefix_cache);
    RUN(test_pressure_and_sampling);
    RUN(test_abort_storm);
    RUN(test_stop_conditions);
    RUN(test_errors);
    RUN(test_devices);
    RUN(test_step_nomem);
    RUN(test_create_nomem);
    return test_exit();
}
