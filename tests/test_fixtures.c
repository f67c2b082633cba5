// The CPU forward against Hugging Face transformers: for every fixture model (made by
// tests/make_fixtures.py), the logits at every position are within fp32 tolerance of
// transformers' and the 32-token greedy continuations are identical.
//
// Each model runs three ways, which must all agree with the reference: all prompts in one
// varlen batch (block size 16); all prompts with 1-token pages and prefill chunks of 7
// tokens; each prompt alone with 3-token pages.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "generate.h"
#include "model.h"
#include "test_util.h"

// gpu_test_fixtures.c includes this file with FIXTURE_DEVICE "cuda" and bf16 tolerances.
#ifndef FIXTURE_DEVICE
#define FIXTURE_DEVICE "cpu"
// Tolerance: both sides compute in fp32 from the same weights and differ in summation
// order and transcendental functions. transformers' own fp32 logits differ from its fp64
// logits by up to 1.6e-4 on these models (|logits| up to 15, measured on `odd`), and ours
// by a similar amount, so 4e-4 absolute + 1e-4 relative is twice the noise while any real
// error (a wrong rope, mask, norm or page) moves logits by 1e-2 or more.
#define ATOL 4e-4
#define RTOL 1e-4
// Greedy tokens must match wherever the reference's top-2 logit gap exceeds this: in fp32,
// everywhere.
#define GAP_MIN 0.0
#endif

typedef struct Prompt {
    int n_prompt, n_gen;
    int32_t *ids;   // [n_prompt + n_gen]
    float *logits;  // [(n_prompt + n_gen), vocab]
} Prompt;

typedef struct Expected {
    int n_prompts, vocab;
    Prompt *prompts;
} Expected;

static int read_u32(FILE *f, uint32_t *v) { return fread(v, 4, 1, f) == 1 ? 0 : -1; }

static void expected_free(Expected *e) {
    for (int i = 0; i < e->n_prompts; i++) {
        free(e->prompts[i].ids);
        free(e->prompts[i].logits);
    }
    free(e->prompts);
}

// Reads expected.bin, format version 1 (see tests/fixtures/README.md).
static int expected_load(const char *dir, Expected *e) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(test_path(dir, "expected.bin"), "rb");
    if (!f) return -1;
    char magic[4];
    uint32_t version, n, vocab;
    int bad = fread(magic, 1, 4, f) != 4 || memcmp(magic, "MXFX", 4) != 0 || read_u32(f, &version) || version != 1 ||
              read_u32(f, &n) || read_u32(f, &vocab) || n == 0 || n > 64 || vocab == 0 || vocab > 100000;
    if (!bad) {
        e->prompts = calloc(n, sizeof *e->prompts);
        e->vocab = (int)vocab;
    }
    for (uint32_t i = 0; !bad && i < n; i++) {
        Prompt *p = &e->prompts[i];
        uint32_t np, ng;
        bad = read_u32(f, &np) || read_u32(f, &ng) || np == 0 || np > 4096 || ng > 4096;
        if (bad) break;
        e->n_prompts++;
        size_t len = (size_t)np + ng;
        p->n_prompt = (int)np;
        p->n_gen = (int)ng;
        p->ids = malloc(len * sizeof *p->ids);
        p->logits = malloc(len * vocab * sizeof *p->logits);
        bad = fread(p->ids, sizeof *p->ids, len, f) != len || fread(p->logits, sizeof(float), len * vocab, f) != len * vocab;
    }
    bad |= fgetc(f) != EOF;
    fclose(f);
    if (bad) expected_free(e);
    return bad ? -1 : 0;
}

// The gap between the two largest logits of a row.
static double top2_gap(const float *row, int vocab) {
    double a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        if (row[i] > a) b = a, a = row[i];
        else if (row[i] > b) b = row[i];
    }
    return a - b;
}

// The backend the fixtures run on; NULL (and a skip) when this build or machine lacks it.
static const Backend *fixture_backend(void) {
    static Backend b;
    static int opened;
    if (!opened) opened = backend_open(FIXTURE_DEVICE, &b) == MX_OK ? 1 : -1;
    return opened > 0 ? &b : NULL;
}

typedef struct Layout {
    const char *name;
    int block_size, max_step_tokens, together;
} Layout;

// Runs the prompts per layout and compares with the reference; returns the max abs error.
static double run_layout(const char *dir, const Expected *e, const Layout *lay) {
    int n = e->n_prompts;
    GenRequest *reqs = calloc((size_t)n, sizeof *reqs);
    float **logits = calloc((size_t)n, sizeof *logits);
    for (int i = 0; i < n; i++) {
        const Prompt *p = &e->prompts[i];
        reqs[i] = (GenRequest){.prompt = p->ids, .n_prompt = p->n_prompt, .max_tokens = p->n_gen,
                               .sampling = sampling_default(), .ignore_eos = true};
        logits[i] = malloc((size_t)(p->n_prompt + p->n_gen) * e->vocab * sizeof(float));
        reqs[i].logits_out = logits[i];
    }
    ModelOptions opt = model_options_default();
    opt.block_size = lay->block_size;
    opt.max_step_tokens = lay->max_step_tokens;
    opt.max_logit_rows = lay->max_step_tokens;
    opt.kv_blocks = generate_blocks_needed(reqs, n, lay->block_size);
    Model m;
    double max_err = 0;
    MxStatus st = model_load(dir, fixture_backend(), &opt, &m);
    CHECK_STATUS(st, MX_OK);
    if (st == MX_OK) {
        CHECK(m.cfg.vocab_size == e->vocab);
        GenStats stats;
        if (lay->together) {
            CHECK_STATUS(generate_run(&m, reqs, n, &stats), MX_OK);
        } else {
            for (int i = 0; i < n; i++) CHECK_STATUS(generate_run(&m, &reqs[i], 1, &stats), MX_OK);
        }
        CHECK(block_pool_live_count(&m.pool) == 0);
        for (int i = 0; i < n; i++) {
            const Prompt *p = &e->prompts[i];
            const GenRequest *r = &reqs[i];
            // The continuation must match the reference up to the first token where the
            // reference's top-2 gap is within GAP_MIN (a near tie that rounding may flip);
            // from there the contexts differ, so later rows are not compared.
            int agree = 0;
            while (agree < p->n_gen && agree < r->n_output && r->output[agree] == p->ids[p->n_prompt + agree]) agree++;
            bool same = agree == p->n_gen && r->n_output == p->n_gen;
            if (!same && agree < r->n_output && agree < p->n_gen) {
                double gap = top2_gap(p->logits + (size_t)(p->n_prompt + agree - 1) * e->vocab, e->vocab);
                if (gap <= GAP_MIN) {
                    fprintf(stderr, "  %s %s prompt %d: diverges at generated token %d, a near tie (gap %.3g)\n", dir,
                            lay->name, i, agree, gap);
                    same = true;
                }
            }
            CHECK(same);
            if (!same) fprintf(stderr, "  %s %s prompt %d: greedy continuation differs at token %d\n", dir, lay->name, i, agree);
            // Rows 0 .. n_prompt + agree - 1: the last generated token is never fed back, and
            // rows past a divergence have a different context.
            int rows = p->n_prompt + (agree < p->n_gen ? agree : p->n_gen - 1);
            size_t count = (size_t)rows * e->vocab, bad = 0;
            for (size_t j = 0; j < count; j++) {
                double ref = p->logits[j], got = logits[i][j], err = fabs(got - ref);
                if (!isfinite(got) || err > ATOL + RTOL * fabs(ref)) bad++;
                if (err > max_err || !isfinite(got)) max_err = isfinite(got) ? err : INFINITY;
            }
            CHECK(bad == 0);
            if (bad) fprintf(stderr, "  %s %s prompt %d: %zu of %zu logits out of tolerance\n", dir, lay->name, i, bad, count);
        }
        model_free(&m);
    }
    for (int i = 0; i < n; i++) {
        gen_request_clear(&reqs[i]);
        free(logits[i]);
    }
    free(logits);
    free(reqs);
    return max_err;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "tests/fixtures";
    if (!fixture_backend()) {
        fprintf(stderr, "skipped: no %s backend: %s\n", FIXTURE_DEVICE, mx_last_error());
        return 77;
    }
    fprintf(stderr, "backend: %s\n", fixture_backend()->desc);
    static const char *const variants[] = {"mha",     "gqa",  "tied", "rope_llama3", "rope_linear", "head_dim",
                                           "odd",     "bf16", "f16",  "sharded",     "mistral"};
    static const Layout layouts[] = {
        {"batched", 16, 256, 1},
        {"pages-of-1-chunks-of-7", 1, 7, 1},
        {"one-at-a-time", 3, 64, 0},
    };
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, variants[v]);
        Expected e;
        int loaded = expected_load(dir, &e);
        CHECK(loaded == 0);
        if (loaded) {
            fprintf(stderr, "FAIL %s: cannot read expected.bin\n", dir);
            continue;
        }
        int before = test_failures;
        for (size_t l = 0; l < sizeof layouts / sizeof *layouts; l++) {
            double err = run_layout(dir, &e, &layouts[l]);
            fprintf(stderr, "%s %-12s %-24s max |logit error| %.2e\n", test_failures == before ? "ok  " : "FAIL",
                    variants[v], layouts[l].name, err);
        }
        expected_free(&e);
    }
    return test_exit();
}
