// Logprobs through the engine (myrmex.h), against transformers' logits in the fixtures:
//
// - prompt logprobs (what `echo` with `logprobs` serves, and lm-evaluation-harness sums for
//   log-likelihood scoring): entry i is log_softmax(logits[i - 1])[prompt[i]], entry 0 NaN,
//   within the fixtures' tolerance; the top ids at each position are the reference's best;
// - chunked: with 3 scoring rows per step, 5-token budgets and 4-token blocks the values are
//   bit-identical to one big chunk, also with other requests in the same steps;
// - never from the prefix cache: a prompt already cached is computed again when scored;
// - generated tokens: token_logprobs agree with the reference and, for a greedy token, bit
//   for bit with the first top logprob (clients compare the two to tell a greedy token);
//   the streamed events carry the same values;
// - an engine with prompt_logprob_rows 0 refuses prompt scoring with MX_ERR_ARG.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "myrmex.h"
#include "test_util.h"

static const char *fixtures = "tests/fixtures";

enum { MAX_PROMPTS = 8, MAX_LEN = 128, MAX_VOCAB = 512 };

typedef struct Ref {
    int n, vocab;
    int n_prompt[MAX_PROMPTS], n_gen[MAX_PROMPTS];
    int32_t ids[MAX_PROMPTS][MAX_LEN];
    float *logits[MAX_PROMPTS]; // [n_prompt + n_gen, vocab] transformers' logits
} Ref;

static const char *variant(const char *name) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", fixtures, name);
    return dir;
}

// DIR/expected.bin (format in tests/fixtures/README.md), logits included.
static int ref_load(const char *dir, Ref *r) {
    memset(r, 0, sizeof *r);
    TestBytes b;
    if (test_read_file(test_path(dir, "expected.bin"), &b)) return -1;
    Cur c = {b.data, b.data + b.len, false};
    uint32_t magic = cur_u32(&c), version = cur_u32(&c), n = cur_u32(&c), vocab = cur_u32(&c);
    bool bad = magic != 0x5846584d || version != 1 || n > MAX_PROMPTS || vocab > MAX_VOCAB;
    r->vocab = (int)vocab;
    for (uint32_t i = 0; !bad && i < n; i++) {
        uint32_t np = cur_u32(&c), ng = cur_u32(&c);
        bad = c.bad || np + ng > MAX_LEN;
        for (uint32_t j = 0; !bad && j < np + ng; j++) r->ids[i][j] = (int32_t)cur_u32(&c);
        size_t floats = (size_t)(np + ng) * vocab;
        bad = bad || c.bad || (size_t)(c.end - c.p) < floats * 4;
        if (bad) break;
        r->logits[i] = xmalloc(floats * sizeof(float));
        memcpy(r->logits[i], c.p, floats * 4); // little-endian f32, as on every supported host
        c.p += floats * 4;
        r->n_prompt[i] = (int)np;
        r->n_gen[i] = (int)ng;
        r->n++;
    }
    free(b.data);
    return bad || c.bad ? -1 : 0;
}

static void ref_free(Ref *r) {
    for (int i = 0; i < r->n; i++) free(r->logits[i]);
}

// log_softmax(row)[id] in double.
static double ref_logprob(const float *row, int vocab, int32_t id) {
    double max = row[0], sum = 0;
    for (int i = 1; i < vocab; i++) max = row[i] > max ? row[i] : max;
    for (int i = 0; i < vocab; i++) sum += exp((double)row[i] - max);
    return (double)row[id] - max - log(sum);
}

static MxEngineOptions options(int block_size, int budget, int score_rows) {
    MxEngineOptions o = mx_engine_options_default();
    o.device = "cpu";
    o.block_size = block_size;
    o.max_batched_tokens = budget;
    o.max_seqs = 8;
    o.kv_blocks = 256;
    o.prompt_logprob_rows = score_rows;
    return o;
}

enum { TOP = 3 };

typedef struct Scored {
    int n_prompt, n_out;
    float prompt_lp[MAX_LEN];
    int32_t prompt_top[MAX_LEN][TOP];
    float prompt_top_lp[MAX_LEN][TOP];
    int32_t out[MAX_LEN];
    float out_lp[MAX_LEN], out_top_lp[MAX_LEN][TOP];
    float event_lp[MAX_LEN];
    int n_cached_prompt;
} Scored;

static void on_token(void *user, const MxTokenEvent *ev) {
    Scored *s = user;
    if (ev->token >= 0 && ev->index < MAX_LEN) s->event_lp[ev->index] = ev->logprob;
}

// Runs every prompt of ref (scored, max_tokens new tokens) plus `plain` unscored copies of
// prompt 0 added first (to fill the prefix cache and share steps), all on one engine.
static void run(const char *dir, const Ref *ref, const MxEngineOptions *o, int max_tokens, int plain, Scored *out) {
    MxEngine *e;
    CHECK_STATUS(mx_engine_create(dir, o, &e), MX_OK);
    if (!e) return;
    int64_t ids[MAX_PROMPTS + 4] = {0};
    MxRequestParams p = mx_request_params_default();
    for (int i = 0; i < plain; i++) {
        p.max_tokens = 4;
        CHECK_STATUS(mx_engine_add(e, ref->ids[0], ref->n_prompt[0], &p, &ids[MAX_PROMPTS + i]), MX_OK);
        if (i == 0) // the first one finishes first: its full blocks are then cached
            while (mx_engine_has_work(e)) CHECK_STATUS(mx_engine_step(e), MX_OK);
    }
    for (int i = 0; i < ref->n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        p = mx_request_params_default();
        p.max_tokens = max_tokens;
        p.prompt_logprobs = true;
        p.logprobs = true;
        p.top_logprobs = TOP;
        p.on_token = on_token;
        p.user = &out[i];
        CHECK_STATUS(mx_engine_add(e, ref->ids[i], ref->n_prompt[i], &p, &ids[i]), MX_OK);
    }
    while (mx_engine_has_work(e)) CHECK_STATUS(mx_engine_step(e), MX_OK);
    for (int i = 0; i < ref->n; i++) {
        MxOutput o2;
        CHECK_STATUS(mx_engine_output(e, ids[i], &o2), MX_OK);
        Scored *s = &out[i];
        s->n_prompt = o2.n_prompt;
        s->n_out = o2.n_tokens;
        s->n_cached_prompt = o2.n_cached_prompt;
        CHECK(o2.prompt_logprobs && o2.prompt_top_ids && o2.token_logprobs && o2.n_top == TOP);
        CHECK(o2.n_prompt_scored == o2.n_prompt);
        if (!o2.prompt_logprobs || !o2.token_logprobs || o2.n_prompt > MAX_LEN || o2.n_tokens > MAX_LEN) continue;
        memcpy(s->prompt_lp, o2.prompt_logprobs, (size_t)o2.n_prompt * sizeof(float));
        memcpy(s->prompt_top, o2.prompt_top_ids, (size_t)o2.n_prompt * TOP * sizeof(int32_t));
        memcpy(s->prompt_top_lp, o2.prompt_top_logprobs, (size_t)o2.n_prompt * TOP * sizeof(float));
        memcpy(s->out, o2.tokens, (size_t)o2.n_tokens * sizeof(int32_t));
        memcpy(s->out_lp, o2.token_logprobs, (size_t)o2.n_tokens * sizeof(float));
        memcpy(s->out_top_lp, o2.top_logprobs, (size_t)o2.n_tokens * TOP * sizeof(float));
    }
    for (int i = 0; i < MAX_PROMPTS + 4; i++)
        if (ids[i]) CHECK_STATUS(mx_engine_release(e, ids[i]), MX_OK);
    MxEngineStats st;
    mx_engine_stats(e, &st);
    CHECK(st.blocks_live == 0);
    mx_engine_destroy(e);
}

static void check_against_ref(const Ref *ref, const Scored *s, int max_tokens) {
    for (int i = 0; i < ref->n; i++) {
        CHECK(s[i].n_prompt == ref->n_prompt[i]);
        CHECK(isnan(s[i].prompt_lp[0]));
        for (int t = 1; t < ref->n_prompt[i]; t++) {
            const float *row = ref->logits[i] + (size_t)(t - 1) * ref->vocab;
            double want = ref_logprob(row, ref->vocab, ref->ids[i][t]);
            CHECK(fabs(s[i].prompt_lp[t] - want) < 1e-3 + 1e-4 * fabs(want));
            // The best id at t - 1 is transformers' argmax (no near-ties in these fixtures'
            // prompts is not guaranteed: compare its logprob, not its id).
            double best = -INFINITY;
            for (int v = 0; v < ref->vocab; v++) {
                double lp = ref_logprob(row, ref->vocab, v);
                best = lp > best ? lp : best;
            }
            CHECK(fabs(s[i].prompt_top_lp[t][0] - best) < 1e-3 + 1e-4 * fabs(best));
            CHECK(s[i].prompt_top_lp[t][0] >= s[i].prompt_top_lp[t][1] && s[i].prompt_top_lp[t][1] >= s[i].prompt_top_lp[t][2]);
            CHECK(s[i].prompt_lp[t] <= s[i].prompt_top_lp[t][0]);
            if (s[i].prompt_top[t][0] == ref->ids[i][t]) CHECK(s[i].prompt_lp[t] == s[i].prompt_top_lp[t][0]);
        }
        CHECK(s[i].n_out == max_tokens);
        for (int k = 0; k < s[i].n_out && k < ref->n_gen[i]; k++) {
            CHECK(s[i].out[k] == ref->ids[i][ref->n_prompt[i] + k]); // greedy = transformers
            const float *row = ref->logits[i] + (size_t)(ref->n_prompt[i] + k - 1) * ref->vocab;
            double want = ref_logprob(row, ref->vocab, s[i].out[k]);
            CHECK(fabs(s[i].out_lp[k] - want) < 1e-3 + 1e-4 * fabs(want));
            CHECK(s[i].out_lp[k] == s[i].out_top_lp[k][0]); // greedy: its logprob is the top one
            CHECK(s[i].event_lp[k] == s[i].out_lp[k]);
        }
    }
}

static bool same(const Scored *a, const Scored *b, int n) {
    for (int i = 0; i < n; i++) {
        if (a[i].n_prompt != b[i].n_prompt || a[i].n_out != b[i].n_out) return false;
        for (int t = 1; t < a[i].n_prompt; t++)
            if (a[i].prompt_lp[t] != b[i].prompt_lp[t] || memcmp(a[i].prompt_top[t], b[i].prompt_top[t], sizeof a[i].prompt_top[t]))
                return false;
        if (memcmp(a[i].out, b[i].out, (size_t)a[i].n_out * sizeof(int32_t)) ||
            memcmp(a[i].out_lp, b[i].out_lp, (size_t)a[i].n_out * sizeof(float)))
            return false;
    }
    return true;
}

static void test_variant(const char *name) {
    Ref ref;
    if (ref_load(variant(name), &ref)) {
        CHECK(!"fixture expected.bin readable");
        return;
    }
    static Scored big[MAX_PROMPTS], chunked[MAX_PROMPTS], cached[MAX_PROMPTS];
    MxEngineOptions o = options(16, 512, 128);
    run(variant(name), &ref, &o, 4, 0, big);
    check_against_ref(&ref, big, 4);

    o = options(4, 5, 3); // 3 rows per step: every prompt is scored over several steps
    run(variant(name), &ref, &o, 4, 0, chunked);
    CHECK(same(big, chunked, ref.n));

    o = options(4, 512, 128); // prompt 0 cached by plain requests, some sharing steps
    run(variant(name), &ref, &o, 4, 3, cached);
    CHECK(same(big, cached, ref.n));
    for (int i = 0; i < ref.n; i++) CHECK(cached[i].n_cached_prompt == 0);
    ref_free(&ref);
}

static void test_variants(void) {
    test_variant("mha");
    test_variant("gqa");
    test_variant("odd");
}

static void test_refused_without_rows(void) {
    MxEngineOptions o = options(16, 64, 0);
    MxEngine *e;
    CHECK_STATUS(mx_engine_create(variant("mha"), &o, &e), MX_OK);
    if (!e) return;
    int32_t prompt[] = {1, 5, 9};
    MxRequestParams p = mx_request_params_default();
    p.prompt_logprobs = true;
    int64_t id;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_ERR_ARG);
    p.prompt_logprobs = false;
    p.logprobs = true; // token logprobs need no scoring rows
    CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &id), MX_OK);
    while (mx_engine_has_work(e)) CHECK_STATUS(mx_engine_step(e), MX_OK);
    MxOutput out;
    CHECK_STATUS(mx_engine_output(e, id, &out), MX_OK);
    CHECK(out.token_logprobs && !out.prompt_logprobs && out.n_tokens == 16);
    for (int i = 0; out.token_logprobs && i < out.n_tokens; i++) CHECK(out.token_logprobs[i] <= 0);
    CHECK_STATUS(mx_engine_release(e, id), MX_OK);
    mx_engine_destroy(e);
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    RUN(test_variants);
    RUN(test_refused_without_rows);
    return test_exit();
}
