// Decode graphs (forward.c) on the CPU: the CPU backend wrapped in a recorder whose
// capture_begin .. capture_end records each op with its parameters and whose graph_launch
// runs them again on the buffers' current contents (what a CUDA graph does), so the
// graph logic is checked without a GPU:
//
// - steps replayed from graphs (buckets of 2, 4 and 8 sequences, padded where needed, with
//   and without the sample op) give the same tokens and logits as op by op, and each bucket
//   is captured only the second time it runs (the first runs op by op);
// - at tp 1 a failed capture falls back to op by op, and no later capture is tried;
// - with a comm (tp > 1): graphs only when the comm can be captured, the sample op outside
//   them, so that a rank that samples and one that does not capture and replay in lockstep,
//   and a failed capture fails the step (the ranks must agree), naming --graphs off.
#include <math.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "model.h"
#include "test_util.h"

static const char *fixtures = "tests/fixtures";

// ---- the recording backend -----------------------------------------------------------------

typedef enum { REC_EMBEDDING, REC_RMSNORM, REC_GEMM, REC_ROPE_KV, REC_ATTENTION, REC_SILU, REC_LM_HEAD,
               REC_SAMPLE, REC_SUM, REC_COPY_2D } RecKind;

typedef struct Recorded {
    RecKind kind;
    union {
        EmbeddingParams embedding;
        RmsNormParams rmsnorm;
        GemmParams gemm;
        RopeKvWriteParams rope_kv;
        AttentionParams attention;
        SiluMulParams silu;
        LmHeadParams lm_head;
        SampleParams sample;
        SumParams sum;
        struct { void *dst; const void *src; size_t dst_pitch, src_pitch, width, rows; } copy;
    } p;
} Recorded;

typedef struct RecGraph {
    Recorded *ops;
    int n, cap;
} RecGraph;

typedef struct RecQueue {
    void *inner;         // ops_ref's queue
    RecGraph *capturing; // non-NULL between capture_begin and capture_end
    bool broken;         // an op that cannot be captured was called meanwhile
} RecQueue;

static struct {
    int captures, launches;
    bool fail_next_capture; // capture_end fails once, as a library call a capture refuses would
} rec;

static int record(RecQueue *q, Recorded r) {
    RecGraph *g = q->capturing;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        Recorded *grown = realloc(g->ops, (size_t)g->cap * sizeof *grown);
        if (!grown) return OPS_ERR_ARG;
        g->ops = grown;
    }
    g->ops[g->n++] = r;
    return OPS_OK;
}

// Each op: recorded while capturing, else run on ops_ref.
#define REC_OP(fn, Type, field, KIND)                                                         \
    static int rec_##fn(const Type *p, void *queue) {                                         \
        RecQueue *q = queue;                                                                  \
        if (q->capturing) return record(q, (Recorded){.kind = KIND, .p.field = *p});          \
        return ops_ref.fn(p, q->inner);                                                       \
    }
REC_OP(embedding, EmbeddingParams, embedding, REC_EMBEDDING)
REC_OP(rmsnorm, RmsNormParams, rmsnorm, REC_RMSNORM)
REC_OP(gemm, GemmParams, gemm, REC_GEMM)
REC_OP(rope_kv_write, RopeKvWriteParams, rope_kv, REC_ROPE_KV)
REC_OP(attention, AttentionParams, attention, REC_ATTENTION)
REC_OP(silu_mul, SiluMulParams, silu, REC_SILU)
REC_OP(lm_head, LmHeadParams, lm_head, REC_LM_HEAD)
REC_OP(sample, SampleParams, sample, REC_SAMPLE)
REC_OP(sum, SumParams, sum, REC_SUM)

static int rec_copy_2d(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                       void *queue) {
    RecQueue *q = queue;
    if (q->capturing)
        return record(q, (Recorded){.kind = REC_COPY_2D, .p.copy = {dst, src, dst_pitch, src_pitch, width, rows}});
    return ops_ref.copy_2d(dst, dst_pitch, src, src_pitch, width, rows, q->inner);
}

static int replay(const Recorded *r, void *inner) {
    switch (r->kind) {
    case REC_EMBEDDING: return ops_ref.embedding(&r->p.embedding, inner);
    case REC_RMSNORM: return ops_ref.rmsnorm(&r->p.rmsnorm, inner);
    case REC_GEMM: return ops_ref.gemm(&r->p.gemm, inner);
    case REC_ROPE_KV: return ops_ref.rope_kv_write(&r->p.rope_kv, inner);
    case REC_ATTENTION: return ops_ref.attention(&r->p.attention, inner);
    case REC_SILU: return ops_ref.silu_mul(&r->p.silu, inner);
    case REC_LM_HEAD: return ops_ref.lm_head(&r->p.lm_head, inner);
    case REC_SAMPLE: return ops_ref.sample(&r->p.sample, inner);
    case REC_SUM: return ops_ref.sum(&r->p.sum, inner);
    case REC_COPY_2D:
        return ops_ref.copy_2d(r->p.copy.dst, r->p.copy.dst_pitch, r->p.copy.src, r->p.copy.src_pitch,
                               r->p.copy.width, r->p.copy.rows, inner);
    }
    return OPS_ERR_ARG;
}

// Copies and syncs cannot be captured (a CUDA capture refuses a sync; the forward moves
// the batch before capturing and the results after).
static int rec_upload(void *dst, const void *src, size_t bytes, void *queue) {
    RecQueue *q = queue;
    if (q->capturing) return q->broken = true, OPS_ERR_ARG;
    return ops_ref.upload(dst, src, bytes, q->inner);
}

static int rec_download(void *dst, const void *src, size_t bytes, void *queue) {
    RecQueue *q = queue;
    if (q->capturing) return q->broken = true, OPS_ERR_ARG;
    return ops_ref.download(dst, src, bytes, q->inner);
}

static int rec_sync(void *queue) {
    RecQueue *q = queue;
    if (q->capturing) return q->broken = true, OPS_ERR_ARG;
    return ops_ref.sync(q->inner);
}

static int rec_fill(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, void *queue) {
    RecQueue *q = queue;
    if (q->capturing) return q->broken = true, OPS_ERR_ARG;
    return ops_ref.fill(dst, n, dtype, seed, lo, hi, q->inner);
}

static void *rec_queue_create(void) {
    RecQueue *q = calloc(1, sizeof *q);
    if (q) q->inner = ops_ref.queue_create();
    return q;
}

static void rec_queue_destroy(void *queue) {
    RecQueue *q = queue;
    if (q) ops_ref.queue_destroy(q->inner);
    free(q);
}

static void rec_graph_destroy(void *graph) {
    RecGraph *g = graph;
    if (g) free(g->ops);
    free(g);
}

static int rec_capture_begin(void *queue) {
    RecQueue *q = queue;
    if (q->capturing || !(q->capturing = calloc(1, sizeof *q->capturing))) return OPS_ERR_ARG;
    q->broken = false;
    return OPS_OK;
}

static int rec_capture_end(void *queue, void **graph) {
    RecQueue *q = queue;
    RecGraph *g = q->capturing;
    q->capturing = NULL;
    *graph = NULL;
    if (!g) return OPS_ERR_ARG;
    if (q->broken || rec.fail_next_capture) {
        rec.fail_next_capture = false;
        rec_graph_destroy(g);
        return OPS_ERR_ARG;
    }
    rec.captures++;
    *graph = g;
    return OPS_OK;
}

static int rec_graph_launch(void *graph, void *queue) {
    RecQueue *q = queue;
    RecGraph *g = graph;
    rec.launches++;
    for (int i = 0; i < g->n; i++)
        if (replay(&g->ops[i], q->inner) != OPS_OK) return OPS_ERR_ARG;
    return OPS_OK;
}

static Ops ops_recording(void) {
    Ops o = ops_ref;
    o.name = "recording";
    o.queue_create = rec_queue_create, o.queue_destroy = rec_queue_destroy;
    o.upload = rec_upload, o.download = rec_download, o.sync = rec_sync, o.fill = rec_fill;
    o.embedding = rec_embedding, o.rmsnorm = rec_rmsnorm, o.gemm = rec_gemm, o.rope_kv_write = rec_rope_kv_write;
    o.attention = rec_attention, o.silu_mul = rec_silu_mul, o.lm_head = rec_lm_head, o.sample = rec_sample;
    o.sum = rec_sum, o.copy_2d = rec_copy_2d;
    o.capture_begin = rec_capture_begin, o.capture_end = rec_capture_end;
    o.graph_launch = rec_graph_launch, o.graph_destroy = rec_graph_destroy;
    return o;
}

static Ops recording_ops;

// ---- a comm of one rank, for the tp > 1 branch ----------------------------------------------

static MxStatus one_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    (void)c, (void)buf, (void)count, (void)dtype, (void)queue;
    return MX_OK;
}

static MxStatus one_gather(Comm *c, const float *local, float *full, int rows, int vocab, int stride, void *queue) {
    (void)c, (void)rows, (void)vocab, (void)stride, (void)queue;
    return local == full ? MX_OK : mx_fail(MX_ERR_ARG, "one rank's logits are the full logits");
}

static MxStatus one_wait(Comm *c, void *queue) { return c->ops->sync(queue) == OPS_OK ? MX_OK : MX_ERR_OPS; }
static void one_abort(Comm *c, const char *why) { (void)c, (void)why; }
static void one_destroy(Comm *c) { (void)c; }

static const CommImpl capturable_one = {.name = "one", .capturable = true, .all_reduce = one_all_reduce,
                                        .gather_vocab = one_gather, .wait = one_wait, .abort = one_abort,
                                        .destroy = one_destroy};
static const CommImpl host_one = {.name = "one-host", .capturable = false, .all_reduce = one_all_reduce,
                                  .gather_vocab = one_gather, .wait = one_wait, .abort = one_abort,
                                  .destroy = one_destroy};

// ---- a decode driver -------------------------------------------------------------------------

// Sequences that finish at different steps: decode steps of 5, 5, 3, 3, 3, 2, 2 and 1
// sequences, in buckets of 8 and 4 (padded) and 2, each seen more than once, and 1, seen
// once (run op by op, never captured).
enum { N_SEQ = 5, MAX_PROMPT = 9, MAX_GEN = 9, BLOCK = 4, BLOCKS_PER_SEQ = 5 };
static const int gen_len[N_SEQ] = {9, 3, 6, 3, 8};

typedef struct Run {
    int32_t tokens[N_SEQ][MAX_GEN];
    float *logits; // [N_SEQ, MAX_GEN, vocab]: the rows each step produced
    MxStatus status;
} Run;

static float odd_temperature = 0.8f; // of sequences 1 and 3 when sampling

// Prefill of every prompt in one step, then decode steps of the live sequences; `sample`
// draws on the backend (sequences 1 and 3 at odd_temperature), else greedy on the host.
static void drive(Model *m, bool sample, Run *out) {
    int vocab = m->cfg.vocab_size;
    memset(out->tokens, 0, sizeof out->tokens);
    out->logits = calloc((size_t)N_SEQ * MAX_GEN * (size_t)vocab, sizeof(float));
    out->status = MX_OK;
    test_rng_seed(99);
    int32_t seq[N_SEQ][MAX_PROMPT + MAX_GEN];
    int len[N_SEQ], made[N_SEQ] = {0};
    int32_t ids[N_SEQ][BLOCKS_PER_SEQ];
    BlockTable tables[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) {
        len[s] = test_rng_int(1, MAX_PROMPT);
        for (int j = 0; j < len[s]; j++) seq[s][j] = test_rng_int(0, vocab - 1);
        for (int j = 0; j < BLOCKS_PER_SEQ; j++) ids[s][j] = 1 + s * BLOCKS_PER_SEQ + j;
        tables[s] = (BlockTable){.ids = ids[s], .n_blocks = BLOCKS_PER_SEQ, .capacity = BLOCKS_PER_SEQ};
    }
    Batch b;
    CHECK_STATUS(model_batch_init(m, &b), MX_OK);
    float *logits = calloc((size_t)N_SEQ * (size_t)vocab, sizeof(float));
    for (int step = 0; out->status == MX_OK; step++) {
        int live[N_SEQ], n = 0;
        batch_clear(&b);
        for (int s = 0; s < N_SEQ; s++) {
            if (made[s] == gen_len[s]) continue;
            int start = step == 0 ? 0 : len[s] - 1, n_new = step == 0 ? len[s] : 1;
            CHECK_STATUS(batch_add(&b, &seq[s][start], n_new, start, &tables[s], BLOCK, BATCH_LOGITS_LAST), MX_OK);
            live[n++] = s;
        }
        if (n == 0) break;
        if (sample) {
            float temperature[N_SEQ], top_p[N_SEQ];
            int32_t top_k[N_SEQ], drawn[N_SEQ];
            uint64_t seed[N_SEQ], counter[N_SEQ];
            for (int r = 0; r < n; r++) {
                temperature[r] = live[r] % 2 ? odd_temperature : 0.0f, top_p[r] = 0.9f, top_k[r] = 0;
                seed[r] = 7 + (uint64_t)live[r], counter[r] = (uint64_t)made[live[r]];
            }
            StepSampling sp = {temperature, top_p, top_k, seed, counter};
            out->status = model_forward_sample(m, &b, &sp, drawn, logits);
            for (int r = 0; r < n && !out->status; r++) seq[live[r]][len[live[r]]] = drawn[r];
        } else {
            out->status = model_forward(m, &b, logits);
            for (int r = 0; r < n && !out->status; r++) {
                const float *row = logits + (size_t)r * vocab;
                int best = 0;
                for (int v = 1; v < vocab; v++)
                    if (row[v] > row[best]) best = v;
                seq[live[r]][len[live[r]]] = best;
            }
        }
        for (int r = 0; r < n && !out->status; r++) {
            int s = live[r];
            memcpy(out->logits + ((size_t)s * MAX_GEN + (size_t)made[s]) * vocab, logits + (size_t)r * vocab,
                   (size_t)vocab * sizeof(float));
            out->tokens[s][made[s]++] = seq[s][len[s]++];
        }
    }
    free(logits);
    batch_destroy(&b);
}

static MxStatus load(const char *name, const Ops *ops, Model *m) {
    Backend b = *test_cpu_backend();
    b.ops = ops;
    ModelOptions o = model_options_default();
    o.block_size = BLOCK;
    o.kv_blocks = 1 + N_SEQ * BLOCKS_PER_SEQ;
    return model_load(test_path(fixtures, name), &b, &o, m);
}

static bool same_run(const Model *m, const Run *a, const Run *b) {
    size_t n = (size_t)N_SEQ * MAX_GEN * (size_t)m->cfg.vocab_size;
    float worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(a->logits[i] - b->logits[i]));
    bool same = memcmp(a->tokens, b->tokens, sizeof a->tokens) == 0 && worst <= 1e-5f;
    if (!same) fprintf(stderr, "  runs differ: tokens %s, largest logit difference %g\n",
                       memcmp(a->tokens, b->tokens, sizeof a->tokens) ? "differ" : "equal", (double)worst);
    return same;
}

// ---- tests -----------------------------------------------------------------------------------

static void test_graphs_equal_eager(void) {
    static const char *models[] = {"gqa", "mistral", "tied"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        for (int sample = 0; sample < 2; sample++) {
            Model eager, graphed;
            CHECK_STATUS(load(models[i], &ops_ref, &eager), MX_OK);
            CHECK_STATUS(load(models[i], &recording_ops, &graphed), MX_OK);
            CHECK(graphed.graphs_enabled);
            Run want, got;
            drive(&eager, sample, &want);
            memset(&rec, 0, sizeof rec);
            drive(&graphed, sample, &got);
            CHECK_STATUS(want.status, MX_OK);
            CHECK_STATUS(got.status, MX_OK);
            CHECK(same_run(&eager, &want, &got));
            // Each bucket is captured on its second step and replayed from then on.
            int steps[MODEL_GRAPH_BUCKETS] = {0}, captured = 0, replays = 0;
            for (int s = 1; s < MAX_GEN; s++) {
                int live = 0;
                for (int q = 0; q < N_SEQ; q++) live += gen_len[q] > s;
                if (live) steps[live == 1 ? 0 : live == 2 ? 1 : live <= 4 ? 2 : 3]++;
            }
            for (int k = 0; k < MODEL_GRAPH_BUCKETS; k++)
                if (steps[k] >= 2) captured++, replays += steps[k] - 1;
            CHECK(captured > 0);
            if (rec.captures != captured || rec.launches != replays)
                fprintf(stderr, "  %s: %d captures, %d replays; want %d, %d\n", models[i], rec.captures, rec.launches,
                        captured, replays);
            CHECK(rec.captures == captured && rec.launches == replays);
            for (int k = 0; k < MODEL_GRAPH_BUCKETS; k++) CHECK((graphed.graphs[sample][k] != NULL) == (steps[k] >= 2));
            free(want.logits);
            free(got.logits);
            model_free(&eager);
            model_free(&graphed);
        }
    }
}

// The sampled run on gqa through the recording backend, with a one-rank comm of `impl`
// attached (NULL: none, tp 1) and the first capture failing when fail_capture; the model's
// graphs_enabled after it into *graphs_on.
static void recorded_run(const CommImpl *impl, bool fail_capture, Run *got, bool *graphs_on) {
    Model m;
    CHECK_STATUS(load("gqa", &recording_ops, &m), MX_OK);
    Comm comm = {.impl = impl, .rank = 0, .size = 1, .ops = &recording_ops, .timeout_s = 10};
    m.comm = impl ? &comm : NULL;
    memset(&rec, 0, sizeof rec);
    rec.fail_next_capture = fail_capture;
    drive(&m, true, got);
    *graphs_on = m.graphs_enabled;
    // With a comm rank 0 samples after the graph, so every rank keys its graphs alike.
    for (int k = 0; impl && k < MODEL_GRAPH_BUCKETS; k++) CHECK(!m.graphs[1][k] && !m.graph_warm[1][k]);
    m.comm = NULL;
    model_free(&m);
}

static void test_comms_and_failed_captures(void) {
    Model eager;
    CHECK_STATUS(load("gqa", &ops_ref, &eager), MX_OK);
    Run want, got;
    drive(&eager, true, &want);
    bool graphs_on;
    // tp 1: a failed capture falls back to op by op, and no capture is tried again.
    recorded_run(NULL, true, &got, &graphs_on);
    CHECK_STATUS(got.status, MX_OK);
    CHECK(same_run(&eager, &want, &got) && !graphs_on && rec.captures == 0 && rec.launches == 0);
    free(got.logits);
    // A comm that can be captured: its ranks replay graphs like one rank.
    recorded_run(&capturable_one, false, &got, &graphs_on);
    CHECK_STATUS(got.status, MX_OK);
    CHECK(same_run(&eager, &want, &got) && rec.captures > 0 && rec.launches > 0);
    free(got.logits);
    // One that meets on the host: no graphs.
    recorded_run(&host_one, false, &got, &graphs_on);
    CHECK_STATUS(got.status, MX_OK);
    CHECK(same_run(&eager, &want, &got) && rec.captures == 0 && rec.launches == 0);
    free(got.logits);
    // With a comm a failed capture fails the step: the other ranks may be replaying theirs.
    recorded_run(&capturable_one, true, &got, &graphs_on);
    CHECK_STATUS(got.status, MX_ERR_OPS);
    CHECK(strstr(mx_last_error(), "capturing the decode graph") && strstr(mx_last_error(), "--graphs off"));
    free(got.logits);
    free(want.logits);
    model_free(&eager);
}

// Two ranks see the same batches, but only rank 0 samples: their graph state must move in
// lockstep (NCCL needs the ranks to capture and replay together).
static void test_ranks_in_lockstep(void) {
    Comm comm = {.impl = &capturable_one, .rank = 0, .size = 1, .ops = &recording_ops, .timeout_s = 10};
    Model leader, other;
    CHECK_STATUS(load("gqa", &recording_ops, &leader), MX_OK);
    CHECK_STATUS(load("gqa", &recording_ops, &other), MX_OK);
    leader.comm = other.comm = &comm;
    odd_temperature = 0.0f; // greedy everywhere: both see the same tokens, so the same batches
    Run a, b;
    drive(&leader, true, &a);
    drive(&other, false, &b);
    odd_temperature = 0.8f;
    CHECK_STATUS(a.status, MX_OK);
    CHECK_STATUS(b.status, MX_OK);
    CHECK(memcmp(a.tokens, b.tokens, sizeof a.tokens) == 0);
    int captured = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < MODEL_GRAPH_BUCKETS; i++) {
            CHECK((leader.graphs[k][i] != NULL) == (other.graphs[k][i] != NULL));
            CHECK(leader.graph_warm[k][i] == other.graph_warm[k][i]);
            captured += leader.graphs[k][i] != NULL;
        }
    CHECK(captured == 3); // buckets 8, 4 and 2
    leader.comm = other.comm = NULL;
    free(a.logits);
    free(b.logits);
    model_free(&leader);
    model_free(&other);
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    recording_ops = ops_recording();
    RUN(test_graphs_equal_eager);
    RUN(test_comms_and_failed_captures);
    RUN(test_ranks_in_lockstep);
    return test_exit();
}
