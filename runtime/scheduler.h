// Continuous batching over the paged KV cache: which sequences run in the next step, and
// how many of their tokens. Host metadata only; the engine turns a plan into a Batch.
//
// A sequence's tokens are its prompt, then its generated ids. n_computed of them have K/V
// in its blocks; the rest are pending. A decode is a running sequence with one pending
// token; a prefill (first admission, or recompute after preemption) has more, and is spread
// over steps in chunks when it does not fit the budget:
//
//   tokens   [0 ........................ n_computed ..... n_computed + n_new ..... n_tokens)
//             K/V in blocks (cache hits       this step's chunk             still pending
//             included)
//
// Each step (sched_schedule) fills a token budget and a sequence cap, FCFS:
//   1. running decodes, oldest first;
//   2. running prefills (chunks of prompts longer than the budget);
//   3. waiting sequences, in queue order: prefix-cache hits first (full blocks only, and at
//      least one token is always left to compute, whose logits sample the next token), then
//      a chunk; admission stops at the first that does not fit (no overtaking). While others
//      run, a sequence is admitted only if one block per running sequence stays available
//      for growth, so admitting it does not force a preemption on the next block boundary.
// When a running sequence needs a block and none is available, the most recently admitted
// running sequence is preempted: its blocks are released (full ones stay in the prefix
// cache), its tokens (prompt + output so far) are kept, and it goes to the front of the
// waiting queue to be recomputed. The oldest running sequence is therefore never preempted
// while others run, and a sequence alone always fits (sched_add checks that), so every
// step makes progress and nothing deadlocks.
//
// After the forward, sched_commit marks the chunks computed and registers newly full blocks
// in the prefix cache. Sequences are owned by the caller; sched_remove takes one out
// (finished or aborted) and releases its blocks.
#ifndef MYRMEX_SCHEDULER_H
#define MYRMEX_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "kv_cache.h"
#include "status.h"

typedef enum SeqState { SEQ_NEW, SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } SeqState;

typedef struct Seq {
    int64_t id;
    int32_t *tokens;      // [max_len] prompt, then generated ids
    int n_tokens, n_prompt;
    int max_len;          // n_prompt + max_tokens; K/V never holds more than max_len - 1
    int n_computed;       // leading tokens whose K/V are in table's blocks
    int n_new;            // tokens scheduled this step; 0 = not in this step
    BlockTable table;
    uint64_t *hashes;     // [max_len / block_size] chained hashes of full blocks, filled lazily
    int n_hashes;
    int n_registered;     // leading blocks of table known to the prefix cache
    uint64_t chain_serial; // prefix-cache serial of block n_registered - 1's content (0: none)
    int n_preemptions;
    int n_cached_prompt;  // tokens found in the prefix cache at its first admission
    bool score_prompt;    // prompt scoring: while set, its prompt is computed (no prefix hits)
                          // with a logits row for every token, in chunks within the step's
                          // score_rows budget; the owner clears it once the prompt is computed
    int n_score_rows;     // rows of this step's chunk taken from that budget
    SeqState state;
    struct Seq *prev, *next; // links in the waiting or running list
    void *user;           // the caller's request
} Seq;

typedef struct SchedConfig {
    int block_size;         // tokens per KV block
    int max_batched_tokens; // token budget of one step
    int max_seqs;           // running sequences at most (so also per step)
    int max_kv_indices;     // block-table entries one step may reference (0 = no limit)
    int max_score_rows;     // logits rows one step may give to prompt-scoring chunks (0: none run)
    bool prefix_cache;
} SchedConfig;

typedef struct SchedStats {
    long steps;               // steps that scheduled something
    long preemptions;
    long tokens_computed;     // tokens run through the model (prefill, recompute, decode)
    long prefix_query_tokens; // tokens of sequences admitted (again, after preemption)
    long prefix_hit_tokens;   // of those, found in the prefix cache and not recomputed
} SchedStats;

typedef struct SeqList {
    Seq *head, *tail;
    int n;
} SeqList;

typedef struct Scheduler {
    SchedConfig cfg;
    BlockPool *pool;    // borrowed
    SeqList waiting, running;
    Seq **plan;         // [max_seqs] this step's sequences, in batch order
    int n_plan, plan_tokens, plan_kv_indices, plan_score_rows;
    SchedStats stats;
} Scheduler;

// A sequence of prompt[0..n_prompt) that may generate up to max_tokens ids. Errors:
// MX_ERR_ARG (n_prompt < 1, max_tokens < 1, block_size < 1), MX_ERR_NOMEM.
MxStatus seq_create(int64_t id, const int32_t *prompt, int n_prompt, int max_tokens, int block_size, Seq **out);
// q must not be in a scheduler (sched_remove first). NULL is fine.
void seq_free(Seq *q);
// Appends a generated id (the caller keeps n_tokens < max_len).
void seq_append(Seq *q, int32_t token);
// Whether this step's chunk reaches the last token, so its logits sample the next one.
static inline bool seq_wants_logits(const Seq *q) { return q->n_new > 0 && q->n_computed + q->n_new == q->n_tokens; }

// Turns the pool's prefix cache on when cfg->prefix_cache. MX_ERR_ARG for a bad config,
// MX_ERR_NOMEM. The pool must outlive the scheduler.
MxStatus sched_init(Scheduler *s, BlockPool *pool, const SchedConfig *cfg);
// Removes every sequence still queued (releasing its blocks) and turns the prefix cache off
// again if sched_init turned it on.
void sched_destroy(Scheduler *s);

// Queues q (state SEQ_NEW) at the back of the waiting queue. MX_ERR_KV_TOO_SMALL when its
// longest possible context needs more blocks than the whole pool has.
MxStatus sched_add(Scheduler *s, Seq *q);
// Plans the next step into s->plan (n_plan may be 0 when nothing can run). Only
// MX_ERR_NOMEM (a block table could not grow) fails; the plan is then empty and every
// sequence is as before, except that preemptions already made stand.
MxStatus sched_schedule(Scheduler *s);
// The plan ran: its chunks are computed; full blocks are registered in the prefix cache.
void sched_commit(Scheduler *s);
// Takes q out (finished or aborted): off its queue and out of the plan, blocks released.
void sched_remove(Scheduler *s, Seq *q);

// Aborts unless every invariant holds: the pool's, each running sequence holds the blocks
// of its computed tokens (and at most those of all its tokens), waiting ones hold none, and
// each block's reference count is the number of tables that hold it. Call it between steps
// (after the sampled tokens are appended); debug builds do after every step, tests too.
void sched_check(const Scheduler *s);

static inline int sched_running(const Scheduler *s) { return s->running.n; }
static inline int sched_waiting(const Scheduler *s) { return s->waiting.n; }

#endif
