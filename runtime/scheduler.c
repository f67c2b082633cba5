// Continuous batching: the per-step plan, chunked prefill, prefix hits, preemption (see
// scheduler.h).
#include "scheduler.h"

#include <string.h>

#include "alloc.h"

// ---- sequences ---------------------------------------------------------------------------

MxStatus seq_create(int64_t id, const int32_t *prompt, int n_prompt, int max_tokens, int block_size, Seq **out) {
    *out = NULL;
    if (!prompt || n_prompt < 1) return mx_fail(MX_ERR_ARG, "empty prompt");
    if (max_tokens < 1) return mx_fail(MX_ERR_ARG, "max_tokens must be >= 1, got %d", max_tokens);
    if (block_size < 1) return mx_fail(MX_ERR_ARG, "block size %d", block_size);
    if ((int64_t)n_prompt + max_tokens > INT32_MAX / 2)
        return mx_fail(MX_ERR_ARG, "%d prompt + %d new tokens is too long", n_prompt, max_tokens);
    Seq *q = mx_calloc(1, sizeof *q);
    if (!q) return mx_fail(MX_ERR_NOMEM, "sequence");
    q->max_len = n_prompt + max_tokens;
    q->tokens = mx_malloc((size_t)q->max_len * sizeof *q->tokens);
    q->hashes = mx_malloc(((size_t)q->max_len / (size_t)block_size + 1) * sizeof *q->hashes);
    if (!q->tokens || !q->hashes) {
        seq_free(q);
        return mx_fail(MX_ERR_NOMEM, "sequence of %d tokens", n_prompt + max_tokens);
    }
    memcpy(q->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    q->id = id;
    q->n_tokens = q->n_prompt = n_prompt;
    q->state = SEQ_NEW;
    *out = q;
    return MX_OK;
}

void seq_free(Seq *q) {
    if (!q) return;
    MX_ASSERT(q->table.n_blocks == 0 && q->state != SEQ_WAITING && q->state != SEQ_RUNNING);
    mx_free(q->table.ids);
    mx_free(q->tokens);
    mx_free(q->hashes);
    mx_free(q);
}

void seq_append(Seq *q, int32_t token) {
    MX_ASSERT(q->n_tokens < q->max_len);
    q->tokens[q->n_tokens++] = token;
}

// Chained hashes of the first n full blocks.
static void seq_hash_blocks(Seq *q, int n, int block_size) {
    for (int i = q->n_hashes; i < n; i++)
        q->hashes[i] = block_hash(i ? q->hashes[i - 1] : 0, q->tokens + (size_t)i * block_size, block_size);
    if (n > q->n_hashes) q->n_hashes = n;
}

// ---- lists and the plan ------------------------------------------------------------------

static void list_push_back(SeqList *l, Seq *q) {
    q->prev = l->tail;
    q->next = NULL;
    if (l->tail) l->tail->next = q;
    else l->head = q;
    l->tail = q;
    l->n++;
}

static void list_push_front(SeqList *l, Seq *q) {
    q->prev = NULL;
    q->next = l->head;
    if (l->head) l->head->prev = q;
    else l->tail = q;
    l->head = q;
    l->n++;
}

static void list_remove(SeqList *l, Seq *q) {
    if (q->prev) q->prev->next = q->next;
    else l->head = q->next;
    if (q->next) q->next->prev = q->prev;
    else l->tail = q->prev;
    q->prev = q->next = NULL;
    l->n--;
}

static int kv_entries(const Scheduler *s, const Seq *q, int n_new) {
    return blocks_for_tokens(q->n_computed + n_new, s->cfg.block_size);
}

// Whether q's next chunk scores prompt tokens (a logits row per token).
static bool scoring(const Seq *q) { return q->score_prompt && q->n_computed < q->n_prompt; }

// A chunk of up to `chunk` tokens for q, cut to the step's scoring rows left when q scores
// its prompt (<= 0: it cannot run this step).
static int score_cap(const Scheduler *s, const Seq *q, int chunk) {
    if (!scoring(q)) return chunk;
    int left = s->cfg.max_score_rows - s->plan_score_rows;
    return chunk < left ? chunk : left;
}

static void plan_add(Scheduler *s, Seq *q, int n_new) {
    MX_ASSERT(s->n_plan < s->cfg.max_seqs && n_new > 0);
    s->plan[s->n_plan++] = q;
    q->n_new = n_new;
    q->n_score_rows = scoring(q) ? n_new : 0;
    s->plan_tokens += n_new;
    s->plan_kv_indices += kv_entries(s, q, n_new);
    s->plan_score_rows += q->n_score_rows;
}

static void plan_remove(Scheduler *s, Seq *q) {
    if (q->n_new == 0) return;
    int i = 0;
    while (s->plan[i] != q) i++;
    memmove(s->plan + i, s->plan + i + 1, (size_t)(s->n_plan - i - 1) * sizeof *s->plan);
    s->n_plan--;
    s->plan_tokens -= q->n_new;
    s->plan_kv_indices -= kv_entries(s, q, q->n_new);
    s->plan_score_rows -= q->n_score_rows;
    q->n_new = q->n_score_rows = 0;
}

static void plan_clear(Scheduler *s) {
    for (int i = 0; i < s->n_plan; i++) s->plan[i]->n_new = s->plan[i]->n_score_rows = 0;
    s->n_plan = s->plan_tokens = s->plan_kv_indices = s->plan_score_rows = 0;
}

// Whether a sequence with a context of ctx tokens still fits the step's block-table entries.
static bool kv_room(const Scheduler *s, int ctx) {
    return s->cfg.max_kv_indices <= 0 ||
           s->plan_kv_indices + blocks_for_tokens(ctx, s->cfg.block_size) <= s->cfg.max_kv_indices;
}

// ---- lifecycle ---------------------------------------------------------------------------

MxStatus sched_init(Scheduler *s, BlockPool *pool, const SchedConfig *cfg) {
    memset(s, 0, sizeof *s);
    if (cfg->block_size < 1 || cfg->max_batched_tokens < 1 || cfg->max_seqs < 1 || cfg->max_kv_indices < 0)
        return mx_fail(MX_ERR_ARG, "scheduler: block size %d, token budget %d, sequence cap %d must be >= 1",
                       cfg->block_size, cfg->max_batched_tokens, cfg->max_seqs);
    s->plan = mx_calloc((size_t)cfg->max_seqs, sizeof *s->plan);
    if (!s->plan) return mx_fail(MX_ERR_NOMEM, "scheduler plan of %d sequences", cfg->max_seqs);
    if (cfg->prefix_cache && !block_pool_prefix_cache_on(pool)) {
        MxStatus st = block_pool_enable_prefix_cache(pool, cfg->block_size);
        if (st) {
            mx_free(s->plan);
            s->plan = NULL;
            return st;
        }
    } else if (cfg->prefix_cache && pool->block_size != cfg->block_size) {
        mx_free(s->plan);
        s->plan = NULL;
        return mx_fail(MX_ERR_ARG, "the pool's prefix cache uses blocks of %d tokens, not %d", pool->block_size,
                       cfg->block_size);
    }
    s->cfg = *cfg;
    s->pool = pool;
    return MX_OK;
}

void sched_destroy(Scheduler *s) {
    if (!s->pool) return;
    while (s->running.head) sched_remove(s, s->running.head);
    while (s->waiting.head) sched_remove(s, s->waiting.head);
    if (s->cfg.prefix_cache) block_pool_disable_prefix_cache(s->pool);
    mx_free(s->plan);
    memset(s, 0, sizeof *s);
}

MxStatus sched_add(Scheduler *s, Seq *q) {
    MX_ASSERT(q->state == SEQ_NEW);
    int most = blocks_for_tokens(q->max_len - 1, s->cfg.block_size);
    if (most > block_pool_total(s->pool))
        return mx_fail(MX_ERR_KV_TOO_SMALL, "%d prompt + up to %d new tokens need %d KV blocks of %d tokens; the pool has %d",
                       q->n_prompt, q->max_len - q->n_prompt, most, s->cfg.block_size, block_pool_total(s->pool));
    q->state = SEQ_WAITING;
    list_push_back(&s->waiting, q);
    return MX_OK;
}

void sched_remove(Scheduler *s, Seq *q) {
    if (q->state == SEQ_RUNNING) {
        plan_remove(s, q);
        list_remove(&s->running, q);
    } else if (q->state == SEQ_WAITING) {
        list_remove(&s->waiting, q);
    }
    block_table_release(&q->table, s->pool);
    q->n_computed = q->n_registered = 0;
    q->chain_serial = 0;
    q->state = SEQ_DONE;
}

// ---- one step ----------------------------------------------------------------------------

// Back to the front of the waiting queue, to be recomputed from its tokens.
static void preempt(Scheduler *s, Seq *q) {
    plan_remove(s, q);
    list_remove(&s->running, q);
    block_table_release(&q->table, s->pool);
    q->n_computed = q->n_registered = 0;
    q->chain_serial = 0;
    q->n_preemptions++;
    q->state = SEQ_WAITING;
    list_push_front(&s->waiting, q);
    s->stats.preemptions++;
}

// Gives running sequence q blocks for n_tokens, preempting the newest running sequences
// until they fit; *gone is set when q itself (the newest) had to go.
static MxStatus reserve_or_preempt(Scheduler *s, Seq *q, int n_tokens, bool *gone) {
    *gone = false;
    int need = blocks_for_tokens(n_tokens, s->cfg.block_size);
    MxStatus st = block_table_grow(&q->table, need);
    if (st) return st;
    while (need - q->table.n_blocks > block_pool_available(s->pool)) {
        Seq *victim = s->running.tail;
        preempt(s, victim);
        if (victim == q) {
            *gone = true;
            return MX_OK;
        }
    }
    st = block_table_reserve(&q->table, s->pool, s->cfg.block_size, n_tokens);
    MX_ASSERT(st == MX_OK); // room and capacity were made above
    return MX_OK;
}

// One pass over the running sequences, oldest first: the decodes, or the prefill chunks.
static MxStatus schedule_running(Scheduler *s, bool decodes) {
    for (Seq *q = s->running.head; q;) {
        int pending = q->n_tokens - q->n_computed, budget = s->cfg.max_batched_tokens - s->plan_tokens;
        if (budget <= 0) break;
        int chunk = score_cap(s, q, pending < budget ? pending : budget);
        if (chunk > 0 && q->n_new == 0 && (pending == 1) == decodes && kv_room(s, q->n_computed + chunk)) {
            bool gone;
            MxStatus st = reserve_or_preempt(s, q, q->n_computed + chunk, &gone);
            if (st) return st;
            if (gone) break; // q was the newest: nothing runs after it
            plan_add(s, q, chunk);
        }
        q = q->next;
    }
    return MX_OK;
}

// Admits waiting sequences in order while they fit: prefix hits, then a first chunk.
static MxStatus admit_waiting(Scheduler *s) {
    const int bs = s->cfg.block_size;
    BlockPool *pool = s->pool;
    Seq *q;
    while ((q = s->waiting.head) && s->running.n < s->cfg.max_seqs) {
        int budget = s->cfg.max_batched_tokens - s->plan_tokens;
        if (budget <= 0) break;
        MxStatus st = block_table_grow(&q->table, blocks_for_tokens(q->n_tokens, bs));
        if (st) return st;

        // Full blocks of tokens[0 .. n_tokens - 1) already in the cache; the ids go into the
        // table's spare capacity and count only once taken below. A scored prompt is
        // computed in full: its logits rows are the point.
        int limit = s->cfg.prefix_cache && !q->score_prompt ? (q->n_tokens - 1) / bs : 0, hits = 0, cached_hits = 0;
        uint64_t serial = 0;
        seq_hash_blocks(q, limit, bs);
        for (; hits < limit; hits++) {
            int32_t id = block_pool_lookup(pool, q->hashes[hits], serial, q->tokens + (size_t)hits * bs);
            if (id < 0) break;
            q->table.ids[hits] = id;
            cached_hits += pool->refs[id] == 0; // taking it removes it from the available blocks
            serial = pool->serial[id];
        }
        int start = hits * bs, left = q->n_tokens - start;
        int chunk = score_cap(s, q, left < budget ? left : budget);
        if (chunk <= 0) break;
        int new_blocks = blocks_for_tokens(start + chunk, bs) - hits;
        int headroom = s->running.n; // one block per running sequence stays free for growth
        if (new_blocks + cached_hits + headroom > block_pool_available(pool) || !kv_room(s, start + chunk)) break;

        for (int i = 0; i < hits; i++) block_pool_take(pool, q->table.ids[i]);
        q->table.n_blocks = hits;
        st = block_table_reserve(&q->table, pool, bs, start + chunk);
        MX_ASSERT(st == MX_OK); // room and capacity were checked above
        q->n_computed = start;
        if (q->n_preemptions == 0) q->n_cached_prompt = start;
        q->n_registered = hits;
        q->chain_serial = serial;
        s->stats.prefix_query_tokens += q->n_tokens;
        s->stats.prefix_hit_tokens += start;
        list_remove(&s->waiting, q);
        list_push_back(&s->running, q);
        q->state = SEQ_RUNNING;
        plan_add(s, q, chunk);
    }
    return MX_OK;
}

MxStatus sched_schedule(Scheduler *s) {
    plan_clear(s); // a plan that was never committed (a failed forward) is dropped
    MxStatus st = schedule_running(s, true);
    if (!st) st = schedule_running(s, false);
    if (!st) st = admit_waiting(s);
    if (st) {
        plan_clear(s);
        return st;
    }
    if (s->n_plan) s->stats.steps++;
    return MX_OK;
}

void sched_commit(Scheduler *s) {
    const int bs = s->cfg.block_size;
    for (int i = 0; i < s->n_plan; i++) {
        Seq *q = s->plan[i];
        q->n_computed += q->n_new;
        s->stats.tokens_computed += q->n_new;
        q->n_new = q->n_score_rows = 0;
        if (!s->cfg.prefix_cache) continue;
        int full = q->n_computed / bs;
        seq_hash_blocks(q, full, bs);
        for (; q->n_registered < full; q->n_registered++) {
            int b = q->n_registered;
            q->chain_serial = block_pool_register(s->pool, q->table.ids[b], q->hashes[b], q->chain_serial,
                                                  q->tokens + (size_t)b * bs);
        }
    }
    s->n_plan = s->plan_tokens = s->plan_kv_indices = s->plan_score_rows = 0;
}

void sched_check(const Scheduler *s) {
    block_pool_check(s->pool);
    int32_t *refs = mx_calloc((size_t)s->pool->n_blocks, sizeof *refs);
    int n_running = 0, n_waiting = 0;
    for (const Seq *q = s->running.head; q; q = q->next, n_running++) {
        MX_ASSERT(q->state == SEQ_RUNNING && q->n_new == 0 && q->n_computed < q->n_tokens);
        // Exactly the computed tokens' blocks, or more after a plan that never ran.
        MX_ASSERT(q->table.n_blocks >= blocks_for_tokens(q->n_computed, s->cfg.block_size) &&
                  q->table.n_blocks <= blocks_for_tokens(q->n_tokens, s->cfg.block_size));
        MX_ASSERT(q->n_registered <= q->n_computed / s->cfg.block_size);
        for (int i = 0; refs && i < q->table.n_blocks; i++) refs[q->table.ids[i]]++;
    }
    for (const Seq *q = s->waiting.head; q; q = q->next, n_waiting++)
        MX_ASSERT(q->state == SEQ_WAITING && q->table.n_blocks == 0 && q->n_computed == 0);
    MX_ASSERT(n_running == s->running.n && n_waiting == s->waiting.n && n_running <= s->cfg.max_seqs);
    for (int32_t id = 0; refs && id < s->pool->n_blocks; id++) MX_ASSERT(refs[id] == s->pool->refs[id]);
    mx_free(refs);
}
