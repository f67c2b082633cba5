// The scheduler and block pool without a model: plan shapes (decodes first, chunked
// prefill, sequence cap, prefix hits, preemption, admission errors), then random
// add/step/abort workloads run against a simulated model whose "K/V pages" are real memory.
//
// The simulation: the K/V of token p of a sequence is H(tokens[0..p]) (a rolling hash of
// the whole prefix, as real K/V depend on every earlier token), written to the token's slot
// when its chunk runs; "attention" reads every slot of the sequence's context back through
// its block table and checks each one, and the next token is a function of the last one
// read. So a block shared wrongly by the prefix cache, a live block handed to another
// sequence, a missed or repeated chunk all show up as a wrong value, and every request's
// output must equal the one computed alone, token by token, whatever the batching,
// chunking, caching, preemption and aborts around it.
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "scheduler.h"
#include "test_util.h"

enum { VOCAB = 40, EOS = 0 };

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t prefix_step(uint64_t h, int32_t token) { return mix(h ^ ((uint64_t)token * 0x9e3779b97f4a7c15ull + 1)); }

// The next token after a prefix whose last K/V is h; never EOS unless allow_eos.
static int32_t next_token(uint64_t h, bool allow_eos) {
    int32_t t = (int32_t)(mix(h + 12345) % VOCAB);
    return t == EOS && !allow_eos ? 1 : t;
}

// The output of a request computed alone, one token at a time.
static int reference(const int32_t *prompt, int n_prompt, int max_tokens, bool allow_eos, int32_t *out) {
    uint64_t h = 0;
    for (int i = 0; i < n_prompt; i++) h = prefix_step(h, prompt[i]);
    int n = 0;
    while (n < max_tokens) {
        int32_t t = next_token(h, allow_eos);
        out[n++] = t;
        if (t == EOS) break;
        h = prefix_step(h, t);
    }
    return n;
}

typedef struct Sim {
    Scheduler s;
    BlockPool pool;
    uint64_t *kv; // [n_blocks * bs] one "K/V" per token slot
    int bs;
    long bad_reads;
    bool allow_eos;
} Sim;

static void sim_init(Sim *m, int n_blocks, int bs, int budget, int max_seqs, bool prefix) {
    memset(m, 0, sizeof *m);
    CHECK_STATUS(block_pool_init(&m->pool, n_blocks), MX_OK);
    SchedConfig cfg = {.block_size = bs, .max_batched_tokens = budget, .max_seqs = max_seqs, .prefix_cache = prefix};
    CHECK_STATUS(sched_init(&m->s, &m->pool, &cfg), MX_OK);
    m->kv = calloc((size_t)n_blocks * bs, sizeof *m->kv);
    m->bs = bs;
}

static void sim_free(Sim *m) {
    sched_destroy(&m->s);
    CHECK(block_pool_live_count(&m->pool) == 0);
    block_pool_destroy(&m->pool);
    free(m->kv);
}

static uint64_t *slot(Sim *m, const Seq *q, int pos) {
    return &m->kv[(size_t)q->table.ids[pos / m->bs] * m->bs + pos % m->bs];
}

// Runs the model part of a step for the plan: writes this step's K/V, then reads and checks
// every token of each context. Returns the K/V of each sequence's last token.
static void sim_forward(Sim *m, uint64_t *last) {
    for (int i = 0; i < m->s.n_plan; i++) {
        Seq *q = m->s.plan[i];
        uint64_t h = 0;
        int ctx = q->n_computed + q->n_new;
        CHECK(q->table.n_blocks >= blocks_for_tokens(ctx, m->bs));
        for (int p = 0; p < ctx; p++) {
            h = prefix_step(h, q->tokens[p]);
            if (p >= q->n_computed) *slot(m, q, p) = h; // this step's chunk
        }
        last[i] = 0;
        h = 0;
        for (int p = 0; p < ctx; p++) { // attention reads every page of the context
            h = prefix_step(h, q->tokens[p]);
            uint64_t got = *slot(m, q, p);
            if (got != h) m->bad_reads++;
            last[i] = got;
        }
    }
}

// One whole step; sequences that finish are removed and reported through done[].
static int sim_step(Sim *m, Seq **done, int max_done) {
    CHECK_STATUS(sched_schedule(&m->s), MX_OK);
    int n = m->s.n_plan, n_done = 0;
    Seq **plan = malloc((size_t)(n ? n : 1) * sizeof *plan);
    uint64_t *last = malloc((size_t)(n ? n : 1) * sizeof *last);
    bool *wants = malloc((size_t)(n ? n : 1) * sizeof *wants);
    for (int i = 0; i < n; i++) {
        plan[i] = m->s.plan[i];
        wants[i] = seq_wants_logits(plan[i]);
    }
    sim_forward(m, last);
    sched_commit(&m->s);
    for (int i = 0; i < n; i++) {
        Seq *q = plan[i];
        if (!wants[i]) continue;
        int32_t t = next_token(last[i], m->allow_eos);
        seq_append(q, t);
        if (t == EOS || q->n_tokens == q->max_len) {
            sched_remove(&m->s, q);
            if (n_done < max_done) done[n_done++] = q;
        }
    }
    sched_check(&m->s);
    free(plan);
    free(last);
    free(wants);
    return n_done;
}

static Seq *new_seq(int64_t id, const int32_t *prompt, int n, int max_tokens, int bs) {
    Seq *q = NULL;
    CHECK_STATUS(seq_create(id, prompt, n, max_tokens, bs, &q), MX_OK);
    return q;
}

static void fill_prompt(int32_t *p, int n, int32_t seed) {
    for (int i = 0; i < n; i++) p[i] = 1 + (seed * 7 + i * 13) % (VOCAB - 1);
}

// ---- plan shapes -------------------------------------------------------------------------

static void test_chunked_prefill_and_decodes_first(void) {
    Sim m;
    sim_init(&m, 33, 4, 4, 8, false);
    int32_t pa[10], pb[6];
    fill_prompt(pa, 10, 1);
    fill_prompt(pb, 6, 2);
    Seq *a = new_seq(1, pa, 10, 3, 4), *b = new_seq(2, pb, 6, 3, 4);
    CHECK_STATUS(sched_add(&m.s, a), MX_OK);
    Seq *done[4];
    // A prompt longer than the budget runs in chunks of 4, 4, 2; logits only on the last.
    // b arrives after the first step and waits while a's prefill takes the whole budget; in
    // the third step it gets what a leaves (2 tokens).
    int chunks[3] = {4, 4, 2};
    for (int k = 0; k < 3; k++) {
        CHECK_STATUS(sched_schedule(&m.s), MX_OK);
        CHECK(m.s.n_plan == (k == 2 ? 2 : 1) && m.s.plan[0] == a && a->n_new == chunks[k]);
        CHECK(seq_wants_logits(a) == (k == 2));
        if (k == 1) CHECK(b->state == SEQ_WAITING);
        if (k == 2) CHECK(m.s.plan[1] == b && b->n_new == 2 && !seq_wants_logits(b));
        if (k == 0) CHECK_STATUS(sched_add(&m.s, b), MX_OK);
        uint64_t last[8];
        sim_forward(&m, last);
        sched_commit(&m.s);
        if (k == 2) seq_append(a, next_token(last[0], false));
    }
    CHECK(a->n_computed == 10 && b->n_computed == 2);
    // Now a decodes first (1 token), then b's prefill continues with the remaining 3.
    CHECK_STATUS(sched_schedule(&m.s), MX_OK);
    CHECK(m.s.n_plan == 2 && m.s.plan[0] == a && a->n_new == 1 && m.s.plan[1] == b && b->n_new == 3);
    CHECK(m.s.plan_tokens == 4);
    int finished = 0;
    for (int step = 0; step < 20 && finished < 2; step++) finished += sim_step(&m, done, 4);
    CHECK(finished == 2 && m.bad_reads == 0);
    int32_t ref[3];
    CHECK(reference(pa, 10, 3, false, ref) == 3 && memcmp(a->tokens + 10, ref, sizeof ref) == 0);
    CHECK(reference(pb, 6, 3, false, ref) == 3 && memcmp(b->tokens + 6, ref, sizeof ref) == 0);
    sim_free(&m);
    seq_free(a);
    seq_free(b);
}

static void test_sequence_cap_and_removal(void) {
    Sim m;
    sim_init(&m, 64, 4, 100, 2, false);
    int32_t p[5];
    fill_prompt(p, 5, 3);
    Seq *q[3];
    for (int i = 0; i < 3; i++) {
        q[i] = new_seq(i, p, 5, 4, 4);
        CHECK_STATUS(sched_add(&m.s, q[i]), MX_OK);
    }
    CHECK_STATUS(sched_schedule(&m.s), MX_OK);
    CHECK(m.s.n_plan == 2 && sched_running(&m.s) == 2 && sched_waiting(&m.s) == 1);
    // Removing a planned sequence takes it out of the plan and frees its blocks.
    int live = block_pool_live_count(&m.pool);
    sched_remove(&m.s, q[0]);
    CHECK(m.s.n_plan == 1 && m.s.plan[0] == q[1] && m.s.plan_tokens == 5);
    CHECK(block_pool_live_count(&m.pool) == live - 2 && q[0]->state == SEQ_DONE);
    sched_remove(&m.s, q[2]); // waiting: just leaves the queue
    CHECK(sched_waiting(&m.s) == 0);
    sched_remove(&m.s, q[1]);
    CHECK(block_pool_live_count(&m.pool) == 0);
    sched_check(&m.s);
    sim_free(&m);
    for (int i = 0; i < 3; i++) seq_free(q[i]);
}

static void test_prefix_hits(void) {
    Sim m;
    sim_init(&m, 64, 4, 64, 8, true);
    int32_t pa[12], pb[11];
    fill_prompt(pa, 12, 5);
    memcpy(pb, pa, 8 * sizeof *pb); // b shares a's first two blocks
    fill_prompt(pb + 8, 3, 9);
    Seq *a = new_seq(1, pa, 12, 2, 4), *b = new_seq(2, pb, 11, 2, 4), *c = new_seq(3, pa, 12, 2, 4);
    Seq *done[4];
    CHECK_STATUS(sched_add(&m.s, a), MX_OK);
    sim_step(&m, done, 4); // a's prefill: blocks 0..2 full and registered
    CHECK(a->n_registered == 3 && m.pool.n_registered == 3);
    CHECK_STATUS(sched_add(&m.s, b), MX_OK);
    CHECK_STATUS(sched_add(&m.s, c), MX_OK);
    CHECK_STATUS(sched_schedule(&m.s), MX_OK);
    // b: two blocks found, 3 tokens computed. c: the same 12 tokens as a, but one token must be
    // computed for its logits, so only (12 - 1) / 4 = 2 blocks are used and 4 recomputed.
    CHECK(b->n_computed == 8 && b->n_new == 3 && b->table.ids[0] == a->table.ids[0] && b->table.ids[1] == a->table.ids[1]);
    CHECK(c->n_computed == 8 && c->n_new == 4 && c->table.ids[2] != a->table.ids[2]);
    CHECK(m.pool.refs[a->table.ids[0]] == 3 && m.pool.refs[a->table.ids[2]] == 1);
    CHECK(m.s.stats.prefix_hit_tokens == 16 && m.s.stats.prefix_query_tokens == 12 + 11 + 12);
    CHECK(b->n_cached_prompt == 8 && c->n_cached_prompt == 8 && a->n_cached_prompt == 0);
    // (sim_step plans again: an uncommitted plan is dropped and the same one is made.)
    int finished = 0;
    for (int step = 0; step < 20 && finished < 3; step++) finished += sim_step(&m, done, 4);
    CHECK(finished == 3 && m.bad_reads == 0);
    CHECK(block_pool_live_count(&m.pool) == 0 && block_pool_cached_count(&m.pool) > 0);
    // A later request finds the blocks in the cached state, takes them back, same output.
    Seq *d = new_seq(4, pa, 12, 2, 4);
    CHECK_STATUS(sched_add(&m.s, d), MX_OK);
    int cached_before = block_pool_cached_count(&m.pool);
    CHECK_STATUS(sched_schedule(&m.s), MX_OK);
    CHECK(d->n_computed == 8 && block_pool_cached_count(&m.pool) == cached_before - 2);
    for (int step = 0; step < 20 && d->state != SEQ_DONE; step++) sim_step(&m, done, 4);
    int32_t ref[2];
    reference(pa, 12, 2, false, ref);
    CHECK(memcmp(a->tokens + 12, ref, sizeof ref) == 0 && memcmp(c->tokens + 12, ref, sizeof ref) == 0 &&
          memcmp(d->tokens + 12, ref, sizeof ref) == 0);
    CHECK(m.bad_reads == 0);
    sim_free(&m);
    seq_free(a);
    seq_free(b);
    seq_free(c);
    seq_free(d);
}

static void test_admission_errors(void) {
    Sim m;
    sim_init(&m, 5, 4, 64, 8, true); // 4 usable blocks = 16 token slots
    int32_t p[20];
    fill_prompt(p, 20, 1);
    // 13 prompt + 4 new: at most 16 tokens ever have K/V (the last one is never fed back).
    Seq *fits = new_seq(1, p, 13, 4, 4), *big = new_seq(2, p, 13, 5, 4), *long_prompt = new_seq(3, p, 20, 1, 4);
    CHECK_STATUS(sched_add(&m.s, fits), MX_OK);
    CHECK_STATUS(sched_add(&m.s, big), MX_ERR_KV_TOO_SMALL);
    CHECK_STATUS(sched_add(&m.s, long_prompt), MX_ERR_KV_TOO_SMALL);
    CHECK(big->state == SEQ_NEW && sched_waiting(&m.s) == 1);
    Seq *bad = NULL;
    CHECK_STATUS(seq_create(9, p, 0, 4, 4, &bad), MX_ERR_ARG);
    CHECK_STATUS(seq_create(9, p, 3, 0, 4, &bad), MX_ERR_ARG);
    CHECK(bad == NULL);
    Seq *done[2];
    for (int step = 0; step < 10 && fits->state != SEQ_DONE; step++) sim_step(&m, done, 2);
    CHECK(fits->state == SEQ_DONE && fits->n_tokens == 17 && m.bad_reads == 0);
    sim_free(&m);
    seq_free(fits);
    seq_free(big);
    seq_free(long_prompt);
}

static void test_preemption(void) {
    // 6 usable blocks of 4. Two sequences of 5 prompt tokens that grow to 5 + 12: together
    // they need 8 blocks, so the newer one is preempted and recomputed after the older ends.
    Sim m;
    sim_init(&m, 7, 4, 64, 4, true);
    int32_t pa[5], pb[5];
    fill_prompt(pa, 5, 11);
    fill_prompt(pb, 5, 12);
    Seq *a = new_seq(1, pa, 5, 12, 4), *b = new_seq(2, pb, 5, 12, 4), *done[2];
    CHECK_STATUS(sched_add(&m.s, a), MX_OK);
    CHECK_STATUS(sched_add(&m.s, b), MX_OK);
    int finished = 0, steps = 0;
    bool saw_b_waiting_with_output = false;
    for (; steps < 100 && finished < 2; steps++) {
        finished += sim_step(&m, done, 2);
        if (b->state == SEQ_WAITING && b->n_tokens > 5) saw_b_waiting_with_output = true;
    }
    CHECK(finished == 2 && m.bad_reads == 0);
    CHECK(m.s.stats.preemptions >= 1 && b->n_preemptions >= 1 && a->n_preemptions == 0);
    CHECK(saw_b_waiting_with_output); // its generated tokens were kept for the recompute
    int32_t ref[12];
    CHECK(reference(pa, 5, 12, false, ref) == 12 && memcmp(a->tokens + 5, ref, sizeof ref) == 0);
    CHECK(reference(pb, 5, 12, false, ref) == 12 && memcmp(b->tokens + 5, ref, sizeof ref) == 0);
    sim_free(&m);
    seq_free(a);
    seq_free(b);
}

// ---- random workloads --------------------------------------------------------------------

static uint64_t rng = 0x2545f4914f6cdd1dull;
static int rnd(int n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

typedef struct Config {
    int n_blocks, bs, budget, max_seqs;
    bool prefix;
} Config;

// Random arrivals, aborts and steps until every request ends; returns preemptions seen.
static long run_random(const Config *cfg, int n_requests, long *aborted, long *hits, long *computed, long *finished) {
    Sim m;
    sim_init(&m, cfg->n_blocks, cfg->bs, cfg->budget, cfg->max_seqs, cfg->prefix);
    m.allow_eos = true;
    Seq **all = calloc((size_t)n_requests, sizeof *all);
    enum { RAN, ABORTED, REJECTED };
    char *fate = calloc((size_t)n_requests, 1);
    int max_len = (cfg->n_blocks - 1) * cfg->bs; // what fits the pool alone (plus one)
    int32_t shared[3][64];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 64; i++) shared[k][i] = 1 + rnd(VOCAB - 1);
    int added = 0, ended = 0, steps = 0;
    while (ended < n_requests && steps < 200000) {
        int op = rnd(10);
        if (op < 3 && added < n_requests) {
            // A prompt from one of three shared prefixes, random length and tail.
            int n_prompt = 1 + rnd(max_len < 48 ? max_len : 48), max_tokens = 1 + rnd(24);
            if (n_prompt + max_tokens - 1 > max_len) max_tokens = 1 + rnd(4);
            int32_t prompt[64];
            memcpy(prompt, shared[rnd(3)], sizeof prompt);
            for (int i = rnd(n_prompt + 1); i < n_prompt; i++) prompt[i] = 1 + rnd(VOCAB - 1);
            Seq *q = new_seq(added, prompt, n_prompt, max_tokens, cfg->bs);
            MxStatus st = sched_add(&m.s, q);
            if (blocks_for_tokens(q->max_len - 1, cfg->bs) > block_pool_total(&m.pool)) {
                CHECK_STATUS(st, MX_ERR_KV_TOO_SMALL);
                fate[added] = REJECTED;
                ended++;
            } else {
                CHECK_STATUS(st, MX_OK);
            }
            all[added++] = q;
        } else if (op == 3 && added > 0) {
            int k = rnd(added);
            Seq *q = all[k];
            if (q->state == SEQ_WAITING || q->state == SEQ_RUNNING) {
                sched_remove(&m.s, q);
                fate[k] = ABORTED;
                (*aborted)++;
                ended++;
            }
            sched_check(&m.s);
        } else {
            Seq *done[64];
            ended += sim_step(&m, done, 64);
            steps++;
        }
        if (added == n_requests && ended < n_requests) { // drain
            Seq *done[64];
            ended += sim_step(&m, done, 64);
            steps++;
        }
    }
    CHECK(ended == n_requests);
    CHECK(m.bad_reads == 0);
    CHECK(sched_running(&m.s) == 0 && sched_waiting(&m.s) == 0 && block_pool_live_count(&m.pool) == 0);
    // Every request that was not aborted has exactly its reference output.
    int32_t ref[64];
    for (int i = 0; i < added; i++) {
        Seq *q = all[i];
        if (fate[i] != RAN) continue;
        int n = reference(q->tokens, q->n_prompt, q->max_len - q->n_prompt, true, ref);
        int same = n == q->n_tokens - q->n_prompt && memcmp(ref, q->tokens + q->n_prompt, (size_t)n * 4) == 0;
        CHECK(same);
    }
    long preemptions = m.s.stats.preemptions;
    *hits += m.s.stats.prefix_hit_tokens;
    *computed += m.s.stats.tokens_computed;
    for (int i = 0; i < added; i++) *finished += fate[i] == RAN;
    sim_free(&m);
    for (int i = 0; i < added; i++) seq_free(all[i]);
    free(all);
    free(fate);
    return preemptions;
}

static void test_random_workloads(void) {
    static const Config configs[] = {
        {65, 4, 32, 8, true}, {65, 4, 32, 8, false}, {12, 4, 16, 6, true}, // pressure
        {9, 2, 1, 4, true},                                               // chunk size 1
        {40, 1, 7, 16, true},                                             // blocks of 1 token
        {30, 16, 64, 3, true}, {200, 8, 512, 64, true},
    };
    long preemptions = 0, aborted = 0, hits = 0, computed = 0, finished = 0;
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++)
        for (int rep = 0; rep < 4; rep++)
            preemptions += run_random(&configs[c], 300, &aborted, &hits, &computed, &finished);
    fprintf(stderr, "  random workloads: %ld requests finished with their reference output, %ld aborted; %ld tokens "
                    "computed, %ld found in the prefix cache; %ld preemptions\n",
            finished, aborted, computed, hits, preemptions);
    CHECK(preemptions > 0 && aborted > 0 && hits > 0); // the workloads reached those paths
}

static void test_nomem(void) {
    Sim m;
    sim_init(&m, 65, 4, 64, 8, true);
    int32_t p[40];
    fill_prompt(p, 40, 4);
    Seq *q = NULL;
    mx_alloc_fail_after(0);
    CHECK_STATUS(seq_create(1, p, 40, 4, 4, &q), MX_ERR_NOMEM);
    mx_alloc_fail_after(-1);
    q = new_seq(1, p, 40, 4, 4);
    CHECK_STATUS(sched_add(&m.s, q), MX_OK);
    mx_alloc_fail_after(0); // the block table cannot grow: nothing is planned, nothing leaks
    CHECK_STATUS(sched_schedule(&m.s), MX_ERR_NOMEM);
    mx_alloc_fail_after(-1);
    CHECK(m.s.n_plan == 0 && block_pool_live_count(&m.pool) == 0 && q->state == SEQ_WAITING);
    sched_check(&m.s);
    Seq *done[1];
    for (int step = 0; step < 10 && q->state != SEQ_DONE; step++) sim_step(&m, done, 1);
    CHECK(q->state == SEQ_DONE && m.bad_reads == 0);
    sim_free(&m);
    seq_free(q);
}

int main(void) {
    RUN(test_chunked_prefill_and_decodes_first);
    RUN(test_sequence_cap_and_removal);
    RUN(test_prefix_hits);
    RUN(test_admission_errors);
    RUN(test_preemption);
    RUN(test_random_workloads);
    RUN(test_nomem);
    return test_exit();
}
