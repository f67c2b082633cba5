// Tensor parallelism on the CPU backend (threads comm):
//
// - sharding: every rank's slices of every tensor tile the whole exactly once (KV heads
//   replicated when tp > Hkv), and sizes that cannot be split are named errors;
// - tp in {2, 4} through the engine, several concurrent requests, on the fixture models
//   (including Hkv < tp, a tied LM head, a sharded checkpoint, bf16 weights): greedy tokens
//   identical to tp 1 and every top logprob within fp32 tolerance of tp 1's;
// - faults: a rank that stalls makes the step fail with MX_ERR_COMM within the timeout,
//   every request ends with an error event, new requests are refused, nothing hangs.
//
// gpu_test_tp.c includes this file with TP_DEVICE "cuda" and the loopback comm (tp ranks on
// one GPU): bf16 sums in another order change logits by ~1e-2, so tokens are compared up to
// the first step where tp 1's top-2 gap is below GAP_MIN, logprobs within LOGPROB_TOL.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "myrmex.h"
#include "shard.h"
#include "test_util.h"

#ifndef TP_DEVICE
#define TP_DEVICE "cpu"
#define TP_COMM "auto"    // threads
#define LOGPROB_TOL 1e-4f // fp32 sums in another order: ~1e-6 relative on logits of size ~1
#define GAP_MIN 0.0f      // compare every token
#endif

static const char *fixtures = "tests/fixtures";
static const char *tp_comm = TP_COMM;
static int tp_max = 4; // the largest tp compared with tp 1

// ---- sharding ------------------------------------------------------------------------------

static ModelConfig config(int hq, int hkv, int inter, int vocab) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.n_heads = hq, c.n_kv_heads = hkv, c.head_dim = 8, c.hidden_size = hq * 8;
    c.intermediate_size = inter, c.vocab_size = vocab, c.n_layers = 1;
    return c;
}

// Rank slices of `name` ([rows, cols]) cover each row (split by rows) or column exactly
// `copies` times.
static void check_tiling(const ModelConfig *c, int tp, const char *name, int64_t rows, int64_t cols, bool by_rows,
                         int copies) {
    int count[4096] = {0};
    int64_t n = by_rows ? rows : cols;
    CHECK(n <= 4096);
    for (int r = 0; r < tp; r++) {
        TensorSlice s;
        CHECK_STATUS(shard_tensor(c, tp, r, name, rows, cols, &s), MX_OK);
        int64_t first = by_rows ? s.row_first : s.col_first, len = by_rows ? s.rows : s.cols;
        CHECK(by_rows ? (s.col_first == 0 && s.cols == cols) : (s.row_first == 0 && s.rows == rows));
        for (int64_t i = first; i < first + len && i < n; i++) count[i]++;
    }
    for (int64_t i = 0; i < n; i++) CHECK(count[i] == copies);
}

static void test_sharding(void) {
    const int tps[] = {1, 2, 4, 8};
    for (int k = 0; k < 4; k++) {
        int tp = tps[k];
        ModelConfig c = config(8, 2, 96, 301);
        int64_t d = c.hidden_size, q = 8 * 8, kv = 2 * 8;
        int kv_copies = tp > 2 ? tp / 2 : 1; // replicated over tp / Hkv ranks when tp > Hkv
        check_tiling(&c, tp, "model.layers.0.self_attn.q_proj.weight", q, d, true, 1);
        check_tiling(&c, tp, "model.layers.0.self_attn.k_proj.weight", kv, d, true, kv_copies);
        check_tiling(&c, tp, "model.layers.0.self_attn.v_proj.weight", kv, d, true, kv_copies);
        check_tiling(&c, tp, "model.layers.0.self_attn.o_proj.weight", d, q, false, 1);
        check_tiling(&c, tp, "model.layers.0.mlp.gate_proj.weight", 96, d, true, 1);
        check_tiling(&c, tp, "model.layers.0.mlp.up_proj.weight", 96, d, true, 1);
        check_tiling(&c, tp, "model.layers.0.mlp.down_proj.weight", d, 96, false, 1);
        check_tiling(&c, tp, "lm_head.weight", 301, d, true, 1);
        check_tiling(&c, tp, "model.embed_tokens.weight", 301, d, true, tp);
        check_tiling(&c, tp, "model.layers.0.input_layernorm.weight", d, 0, true, tp);
        // Each rank's query heads read the KV head it holds.
        for (int r = 0; r < tp; r++) {
            ShardLayout s;
            CHECK_STATUS(shard_layout(&c, tp, r, &s), MX_OK);
            int group = c.n_heads / c.n_kv_heads;
            CHECK(s.head_first / group >= s.kv_head_first);
            CHECK((s.head_first + s.n_heads - 1) / group < s.kv_head_first + s.n_kv_heads);
            CHECK(s.vocab_first == r * s.vocab_stride);
        }
    }
    TensorSlice s;
    ModelConfig c = config(6, 2, 145, 301); // the "odd" fixture's sizes
    CHECK_STATUS(shard_tensor(&c, 4, 0, "lm_head.weight", 301, 48, &s), MX_ERR_TP_SPLIT); // 6 heads over 4
    c = config(6, 3, 96, 301);
    CHECK_STATUS(shard_tensor(&c, 2, 0, "lm_head.weight", 301, 48, &s), MX_ERR_TP_SPLIT); // 3 KV heads over 2
    c = config(4, 2, 145, 301);
    CHECK_STATUS(shard_tensor(&c, 2, 1, "lm_head.weight", 301, 32, &s), MX_ERR_TP_SPLIT); // I = 145 over 2
    c = config(8, 8, 96, 3);
    CHECK_STATUS(shard_tensor(&c, 4, 0, "lm_head.weight", 3, 64, &s), MX_ERR_TP_SPLIT); // 3 vocab rows over 4
    c = config(8, 2, 96, 301);
    CHECK_STATUS(shard_tensor(&c, 2, 0, "model.layers.0.self_attn.rotary.weight", 4, 4, &s), MX_ERR_ARG);
    CHECK_STATUS(shard_tensor(&c, 2, 0, "model.layers.0.self_attn.q_proj.weight", 63, 64, &s), MX_ERR_ARG);
    CHECK_STATUS(shard_tensor(&c, 2, 2, "lm_head.weight", 301, 64, &s), MX_ERR_ARG);
}

// ---- tp N == tp 1 through the engine ------------------------------------------------------

enum { N_REQ = 5, MAX_PROMPT = 40, MAX_OUT = 12, TOP = 3 };

typedef struct Result {
    int32_t tokens[N_REQ][MAX_OUT];
    int n[N_REQ];
    float top[N_REQ][MAX_OUT][TOP];
    MxFinish finish[N_REQ];
} Result;

static int32_t prompts[N_REQ][MAX_PROMPT];
static int prompt_len[N_REQ];

static void make_prompts(int vocab) {
    test_rng_seed(1234);
    for (int i = 0; i < N_REQ; i++) {
        prompt_len[i] = test_rng_int(1, MAX_PROMPT);
        for (int j = 0; j < prompt_len[i]; j++) prompts[i][j] = test_rng_int(0, vocab - 1);
    }
}

static MxEngineOptions options(int tp) {
    MxEngineOptions o = mx_engine_options_default();
    o.device = TP_DEVICE;
    o.comm = tp_comm;
    o.tp = tp;
    o.kv_blocks = 64;
    o.block_size = 4;
    o.max_batched_tokens = 24; // chunked prefill mixed with decodes
    o.max_seqs = 4;            // one request waits at first
    o.tokenizer = false;
    return o;
}

static void run(const char *dir, int tp, Result *res) {
    memset(res, 0, sizeof *res);
    MxEngineOptions o = options(tp);
    MxEngine *e = NULL;
    CHECK_STATUS(mx_engine_create(dir, &o, &e), MX_OK);
    if (!e) return;
    int64_t ids[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        MxRequestParams p = mx_request_params_default();
        p.max_tokens = MAX_OUT;
        p.top_logprobs = TOP;
        p.ignore_eos = true;
        if (i == 3 && GAP_MIN == 0.0f) p.temperature = 0.8f, p.seed = 77; // sampled (exact backends): same draws
        CHECK_STATUS(mx_engine_add(e, prompts[i], prompt_len[i], &p, &ids[i]), MX_OK);
    }
    while (mx_engine_has_work(e)) CHECK_STATUS(mx_engine_step(e), MX_OK);
    for (int i = 0; i < N_REQ; i++) {
        MxOutput out;
        CHECK_STATUS(mx_engine_output(e, ids[i], &out), MX_OK);
        res->n[i] = out.n_tokens;
        res->finish[i] = out.finish;
        for (int t = 0; t < out.n_tokens && t < MAX_OUT; t++) {
            res->tokens[i][t] = out.tokens[t];
            for (int k = 0; k < TOP && out.n_top == TOP; k++) res->top[i][t][k] = out.top_logprobs[t * TOP + k];
        }
        mx_engine_release(e, ids[i]);
    }
    MxEngineStats s;
    mx_engine_stats(e, &s);
    CHECK(s.blocks_live == 0);
    mx_engine_destroy(e);
}

static void test_tp_equals_tp1(void) {
    static const char *models[] = {"mha", "gqa", "mistral", "bf16", "tied", "sharded", "rope_llama3"};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        const char *dir = test_path(fixtures, models[m]);
        char path[4096];
        snprintf(path, sizeof path, "%s", dir);
        ModelConfig c;
        CHECK_STATUS(model_config_load(path, &c), MX_OK);
        make_prompts(c.vocab_size);
        Result want, got;
        run(path, 1, &want);
        for (int tp = 2; tp <= tp_max && c.n_heads % tp == 0; tp *= 2) {
            run(path, tp, &got);
            for (int i = 0; i < N_REQ; i++) {
                CHECK(got.n[i] == MAX_OUT && want.n[i] == MAX_OUT && got.finish[i] == MX_FINISH_LENGTH);
                for (int t = 0; t < MAX_OUT && want.top[i][t][0] - want.top[i][t][1] >= GAP_MIN; t++) {
                    if (got.tokens[i][t] != want.tokens[i][t]) {
                        fprintf(stderr, "%s tp %d: request %d token %d is %d, tp 1 gave %d\n", models[m], tp, i, t,
                                got.tokens[i][t], want.tokens[i][t]);
                        CHECK(false);
                        break;
                    }
                    for (int k = 0; k < TOP; k++) CHECK(fabsf(got.top[i][t][k] - want.top[i][t][k]) < LOGPROB_TOL);
                }
            }
        }
    }
}

#ifndef TP_GPU_MAIN // CPU-backend specifics: the options' errors and the fault tests
static void test_split_errors(void) {
    MxEngineOptions o = options(2);
    MxEngine *e = NULL;
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "odd"), &o, &e), MX_ERR_TP_SPLIT); // 6 heads, I = 145
    CHECK(e == NULL);
    o = options(3);
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "mha"), &o, &e), MX_ERR_TP_SPLIT);
    o = options(2);
    o.comm = "nccl";
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "mha"), &o, &e), MX_ERR_ARG); // nccl needs CUDA
    o.comm = "smoke-signals";
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "mha"), &o, &e), MX_ERR_ARG);
    o = options(8);
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "mha"), &o, &e), MX_ERR_TP_SPLIT); // 4 heads over 8
    o = options(16);
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "gqa"), &o, &e), MX_ERR_ARG); // threads: 8 ranks at most
    o = options(2);
    o.comm_timeout_s = 0;
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "mha"), &o, &e), MX_ERR_ARG);
}

// ---- faults --------------------------------------------------------------------------------

typedef struct Events {
    int finals, errors;
} Events;

static void on_event(void *user, const MxTokenEvent *ev) {
    Events *n = user;
    if (ev->finish != MX_FINISH_NONE) n->finals++;
    if (ev->finish == MX_FINISH_ERROR) n->errors++;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Rank `rank` of tp stops answering at its 7th collective (mid-step, some layers in).
static void test_stalled_rank(int tp, int rank) {
    char spec[32];
    snprintf(spec, sizeof spec, "%d:stall:7", rank);
    setenv("MYRMEX_FAULT", spec, 1);
    MxEngineOptions o = options(tp);
    o.comm_timeout_s = 0.5;
    MxEngine *e = NULL;
    CHECK_STATUS(mx_engine_create(test_path(fixtures, "gqa"), &o, &e), MX_OK);
    unsetenv("MYRMEX_FAULT");
    if (!e) return;
    Events ev = {0};
    int32_t prompt[3] = {5, 6, 7};
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        MxRequestParams p = mx_request_params_default();
        p.max_tokens = 8;
        p.on_token = on_event;
        p.user = &ev;
        CHECK_STATUS(mx_engine_add(e, prompt, 3, &p, &ids[i]), MX_OK);
    }
    double t0 = now();
    MxStatus st = MX_OK;
    while (mx_engine_has_work(e) && st == MX_OK) st = mx_engine_step(e);
    double waited = now() - t0;
    CHECK_STATUS(st, MX_ERR_COMM);
    CHECK(waited < 0.5 * 3 + 2.0); // the timeout, twice over at most, plus slack for a slow CI machine
    CHECK(strstr(mx_last_error(), "rank") != NULL);
    CHECK(ev.finals == 3 && ev.errors == 3);
    CHECK(!mx_engine_has_work(e));
    int64_t id;
    CHECK_STATUS(mx_engine_add(e, prompt, 3, NULL, &id), MX_ERR_COMM);
    MxEngineStats s;
    mx_engine_stats(e, &s);
    CHECK(s.blocks_live == 0);
    for (int i = 0; i < 3; i++) {
        MxOutput out;
        CHECK_STATUS(mx_engine_output(e, ids[i], &out), MX_OK);
        CHECK(out.finish == MX_FINISH_ERROR);
        mx_engine_release(e, ids[i]);
    }
    double t1 = now();
    mx_engine_destroy(e); // the stalled rank's thread wakes and joins
    CHECK(now() - t1 < 2.0);
}

static void test_faults(void) {
    test_stalled_rank(2, 1);
    test_stalled_rank(4, 2);
    test_stalled_rank(2, 0); // rank 0 (the caller's thread) stalls: rank 1 times out
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    RUN(test_sharding);
    RUN(test_split_errors);
    RUN(test_tp_equals_tp1);
    RUN(test_faults);
    return test_exit();
}
#endif
