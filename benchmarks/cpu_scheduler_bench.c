// Host cost of one engine step without the model: the scheduler and block pool (plan,
// commit, prefix-cache registration, finishing and admitting requests) and building the
// step's varlen Batch, at ~1,000 concurrent sequences. The target is "well under 1 ms", so
// the host never starves a GPU decode step of ~6 ms.
//
// Workload: max_seqs sequences decode continuously; each finishes after its max_tokens and
// a new request takes its place, so every step also admits and prefills a few prompts in
// chunks. Prompts share a system prefix (prefix-cache hits) and have their own tails. The
// fake model appends token (position * 31) % vocab.
//
//   cpu_scheduler_bench [--seqs 1000] [--steps 3000] [--prompt 512] [--prefix 256] [--gen 256]
//                       [--block-size 16] [--budget 2048] [--prefix-cache on|off]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "scheduler.h"

// Wall time, and this thread's CPU time: on a shared machine the wall time of a step also
// counts the time other processes held the core (the p99 then shows the OS's 4 ms slices),
// while the CPU time is what the step itself costs.
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct Opts {
    int seqs, steps, prompt, prefix, gen, block_size, budget, prefix_cache;
} Opts;

static int parse(int argc, char **argv, Opts *o) {
    *o = (Opts){.seqs = 1000, .steps = 3000, .prompt = 512, .prefix = 256, .gen = 256, .block_size = 16, .budget = 2048,
                .prefix_cache = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dst = !strcmp(a, "--seqs") ? &o->seqs : !strcmp(a, "--steps") ? &o->steps : !strcmp(a, "--prompt") ? &o->prompt
                   : !strcmp(a, "--prefix") ? &o->prefix : !strcmp(a, "--gen") ? &o->gen
                   : !strcmp(a, "--block-size") ? &o->block_size : !strcmp(a, "--budget") ? &o->budget : NULL;
        if (!strcmp(a, "--prefix-cache") && v) {
            o->prefix_cache = !strcmp(v, "on");
            i++;
        } else if (dst && v) {
            *dst = atoi(v);
            i++;
        } else {
            fprintf(stderr, "usage: cpu_scheduler_bench [--seqs N] [--steps N] [--prompt N] [--prefix N] [--gen N] "
                            "[--block-size N] [--budget N] [--prefix-cache on|off]\n");
            return -1;
        }
    }
    if (o->seqs < 1 || o->steps < 1 || o->prompt < 1 || o->prefix < 0 || o->prefix > o->prompt || o->gen < 1 ||
        o->block_size < 1 || o->budget < o->seqs) {
        fprintf(stderr, "cpu_scheduler_bench: bad sizes (the budget must cover one decode per sequence)\n");
        return -1;
    }
    return 0;
}

enum { VOCAB = 32000 };

int main(int argc, char **argv) {
    Opts o;
    if (parse(argc, argv, &o)) return 2;
    // Room for every sequence at full length, plus the cached prefixes: no preemption, so the
    // figure is the steady-state cost (preemption is rare and priced by the tests).
    int per_seq = blocks_for_tokens(o.prompt + o.gen, o.block_size);
    int n_blocks = (o.seqs + 8) * per_seq + 1;
    BlockPool pool;
    Scheduler s;
    SchedConfig cfg = {.block_size = o.block_size, .max_batched_tokens = o.budget, .max_seqs = o.seqs,
                       .prefix_cache = o.prefix_cache != 0};
    Batch batch;
    if (block_pool_init(&pool, n_blocks) || sched_init(&s, &pool, &cfg) ||
        batch_init(&batch, o.budget, o.seqs, o.seqs * per_seq, o.seqs)) {
        fprintf(stderr, "cpu_scheduler_bench: %s\n", mx_last_error());
        return 1;
    }
    Seq **live = calloc((size_t)o.seqs, sizeof *live), **sample = calloc((size_t)o.seqs, sizeof *sample);
    int32_t *prompt = malloc((size_t)o.prompt * sizeof *prompt);
    int64_t next_id = 0;
    long finished = 0;
    // Sequences start at staggered points of their output, so finishing (and admission) is
    // spread over the steps instead of arriving in one wave.
    int *stagger = calloc((size_t)o.seqs, sizeof *stagger);
    for (int i = 0; i < o.seqs; i++) stagger[i] = 1 + (int)((long)i * o.gen / o.seqs);
    for (int i = 0; i < o.seqs; i++) {
        for (int t = 0; t < o.prompt; t++) prompt[t] = t < o.prefix ? (t * 7 + 1) % VOCAB : (int32_t)((next_id * 131 + t) % VOCAB);
        if (seq_create(next_id++, prompt, o.prompt, stagger[i], o.block_size, &live[i]) || sched_add(&s, live[i])) return 1;
        live[i]->user = &live[i];
    }

    double *sched_t = malloc((size_t)o.steps * sizeof *sched_t), *batch_t = malloc((size_t)o.steps * sizeof *batch_t);
    double *cpu_t = malloc((size_t)o.steps * sizeof *cpu_t);
    int warmup = 0, measured = 0;
    long tokens = 0, decodes = 0;
    for (int step = 0; measured < o.steps; step++) {
        double c0 = cpu_now(), t0 = now();
        if (sched_schedule(&s)) return 1;
        double t1 = now();
        batch_clear(&batch);
        for (int i = 0; i < s.n_plan; i++) {
            Seq *q = s.plan[i];
            if (batch_add(&batch, q->tokens + q->n_computed, q->n_new, q->n_computed, &q->table, o.block_size,
                          seq_wants_logits(q) ? BATCH_LOGITS_LAST : BATCH_LOGITS_NONE))
                return 1;
        }
        double t2 = now();
        int n_step_tokens = s.plan_tokens, n_sample = 0;
        // Which sequences sample: those whose chunk reaches their last token (decided before
        // the commit, which clears the plan).
        for (int i = 0; i < s.n_plan; i++)
            if (seq_wants_logits(s.plan[i])) sample[n_sample++] = s.plan[i];
        sched_commit(&s);
        for (int i = 0; i < n_sample; i++) {
            Seq *q = sample[i];
            seq_append(q, (int32_t)((q->n_tokens * 31) % VOCAB));
            if (q->n_tokens == q->max_len) { // finished: a new request takes its place
                Seq **slot = q->user;
                sched_remove(&s, q);
                seq_free(q);
                finished++;
                for (int t = o.prefix; t < o.prompt; t++) prompt[t] = (int32_t)((next_id * 131 + t) % VOCAB);
                if (seq_create(next_id++, prompt, o.prompt, o.gen, o.block_size, slot) || sched_add(&s, *slot)) return 1;
                (*slot)->user = slot;
            }
        }
        double t3 = now(), c3 = cpu_now();
        // Measure once every sequence has been admitted once, or once the first prompts could
        // all have been prefilled and generated (without prefix hits the prefill demand may
        // keep a queue forever): from then on the mix of decodes and chunks is steady.
        if (!warmup && (sched_running(&s) == o.seqs || step >= (long)o.seqs * o.prompt / o.budget + o.gen)) warmup = step;
        if (warmup && step > warmup) {
            sched_t[measured] = (t1 - t0) + (t3 - t2);
            batch_t[measured] = t2 - t1;
            cpu_t[measured] = c3 - c0;
            tokens += n_step_tokens;
            decodes += n_sample;
            measured++;
        }
        if (step > 10 * o.steps + 100000) {
            fprintf(stderr, "cpu_scheduler_bench: never reached a steady state\n");
            return 1;
        }
    }
    double sum_s = 0, sum_b = 0;
    for (int i = 0; i < measured; i++) {
        sum_s += sched_t[i];
        sum_b += batch_t[i];
    }
    double *both = malloc((size_t)measured * sizeof *both);
    for (int i = 0; i < measured; i++) both[i] = sched_t[i] + batch_t[i];
    qsort(sched_t, (size_t)measured, sizeof *sched_t, cmp_double);
    qsort(both, (size_t)measured, sizeof *both, cmp_double);
    qsort(cpu_t, (size_t)measured, sizeof *cpu_t, cmp_double);
    block_pool_check(&pool);
    printf("cpu_scheduler_bench: %d sequences, prompt %d (shared prefix %d), %d generated each, block %d, budget %d, "
           "prefix cache %s\n",
           o.seqs, o.prompt, o.prefix, o.gen, o.block_size, o.budget, o.prefix_cache ? "on" : "off");
    printf("  %d steps measured: %.0f tokens/step (%.0f sampled), %ld requests finished and replaced, %d waiting at the end\n",
           measured, (double)tokens / measured, (double)decodes / measured, finished, sched_waiting(&s));
    printf("  scheduler + block pool: mean %.1f us, median %.1f us, p99 %.1f us per step\n", 1e6 * sum_s / measured,
           1e6 * sched_t[measured / 2], 1e6 * sched_t[measured * 99 / 100]);
    printf("  batch build:            mean %.1f us per step\n", 1e6 * sum_b / measured);
    printf("  total host (wall):      median %.1f us, p99 %.1f us, max %.1f us per step\n", 1e6 * both[measured / 2],
           1e6 * both[measured * 99 / 100], 1e6 * both[measured - 1]);
    printf("  total host (CPU time):  median %.1f us, p99 %.1f us, max %.1f us per step\n", 1e6 * cpu_t[measured / 2],
           1e6 * cpu_t[measured * 99 / 100], 1e6 * cpu_t[measured - 1]);
    printf("  pool: %d blocks, %d live, %d cached, %d free; prefix hits %ld of %ld prompt tokens\n",
           block_pool_total(&pool), block_pool_live_count(&pool), block_pool_cached_count(&pool),
           block_pool_free_count(&pool), s.stats.prefix_hit_tokens, s.stats.prefix_query_tokens);
    for (int i = 0; i < o.seqs; i++) {
        sched_remove(&s, live[i]);
        seq_free(live[i]);
    }
    sched_destroy(&s);
    batch_destroy(&batch);
    block_pool_destroy(&pool);
    free(live);
    free(sample);
    free(prompt);
    free(stagger);
    free(sched_t);
    free(batch_t);
    free(cpu_t);
    free(both);
    return 0;
}
