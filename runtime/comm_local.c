// comm.h for ranks that share one address space: "threads" (CPU backend) and "loopback"
// (N virtual ranks on one GPU). Every collective is
//   wait for my queue -> publish my buffer -> barrier -> rank 0 reduces or gathers with the
//   backend's ops (sum, copy_2d) and waits for it -> barrier,
// so no rank reads or reuses a buffer while another writes it. Each barrier waits at most
// the timeout; a rank that times out aborts the group, which wakes and fails every other.
//
// A group may be one process's share of ranks that span processes (comm_local_create_spanning):
// then local rank 0 also takes the local result through an "outer" comm between the
// processes (comm_mpi) before the closing barrier, so the other processes' ranks join in.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "comm.h"

typedef struct LocalGroup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size, arrived, refs;
    unsigned long generation; // barriers completed
    bool aborted;
    char why[192];
    const void *bufs[OPS_MAX_RANKS]; // what each rank published for the current collective
    Comm *outer;                     // between processes (one local group each), or NULL
    float *block;                    // outer gather: this process's vocab columns [rows, size * stride]
    size_t block_floats;
} LocalGroup;

typedef struct LocalComm {
    Comm base;  // rank: global (first rank of the group + index)
    LocalGroup *g;
    int index;  // rank within the group
} LocalComm;

static LocalGroup *group_of(Comm *c) { return ((LocalComm *)c)->g; }
static int index_of(Comm *c) { return ((LocalComm *)c)->index; }

static void abort_locked(LocalGroup *g, const char *why) {
    if (!g->aborted) {
        g->aborted = true;
        snprintf(g->why, sizeof g->why, "%s", why);
    }
    pthread_cond_broadcast(&g->cv);
}

static MxStatus aborted_error(const LocalGroup *g) { return mx_fail(MX_ERR_COMM, "%s", g->why); }

// All ranks arrive, or MX_ERR_COMM once the group is aborted or the timeout passes.
static MxStatus barrier(Comm *c, const char *what) {
    LocalGroup *g = group_of(c);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    double whole = (double)(long)c->timeout_s;
    deadline.tv_sec += (time_t)whole;
    deadline.tv_nsec += (long)((c->timeout_s - whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;

    pthread_mutex_lock(&g->mu);
    MxStatus st = MX_OK;
    if (g->aborted) {
        st = aborted_error(g);
    } else if (++g->arrived == g->size) {
        g->arrived = 0;
        g->generation++;
        pthread_cond_broadcast(&g->cv);
    } else {
        unsigned long gen = g->generation;
        while (g->generation == gen && !g->aborted) {
            if (pthread_cond_timedwait(&g->cv, &g->mu, &deadline) == ETIMEDOUT && g->generation == gen && !g->aborted) {
                char why[192];
                snprintf(why, sizeof why, "rank %d waited %.3g s for the other ranks at %s; aborting", c->rank,
                         c->timeout_s, what);
                abort_locked(g, why);
            }
        }
        if (g->generation == gen) st = aborted_error(g);
    }
    pthread_mutex_unlock(&g->mu);
    return st;
}

static void local_abort(Comm *c, const char *why) {
    LocalGroup *g = group_of(c);
    pthread_mutex_lock(&g->mu);
    abort_locked(g, why);
    pthread_mutex_unlock(&g->mu);
}

// The outer comm failed (its error is current): wake this group's other ranks with it.
// Only the group's rank 0 ever calls the outer comm, and none does once the group is
// aborted, so the outer needs no abort of its own.
static MxStatus outer_failed(Comm *c) {
    char why[192];
    snprintf(why, sizeof why, "%s", mx_last_detail());
    local_abort(c, why);
    return mx_fail(MX_ERR_COMM, "%s", why);
}

// An op's failure on one rank aborts the group so the others do not wait for it.
static MxStatus op_failed(Comm *c, const char *what) {
    char why[192];
    snprintf(why, sizeof why, "rank %d: %s failed on the %s backend", c->rank, what, c->ops->name);
    local_abort(c, why);
    return mx_fail(MX_ERR_COMM, "%s", why);
}

static MxStatus local_wait(Comm *c, void *queue) {
    LocalGroup *g = group_of(c);
    pthread_mutex_lock(&g->mu);
    MxStatus st = g->aborted ? aborted_error(g) : MX_OK;
    pthread_mutex_unlock(&g->mu);
    if (st || !queue) return st;
    return c->ops->sync(queue) == OPS_OK ? MX_OK : op_failed(c, "waiting for the step");
}

// Publishes buf once this rank's queue has produced it, then meets the others.
static MxStatus publish(Comm *c, const void *buf, void *queue, const char *what) {
    MxStatus st = local_wait(c, queue);
    if (st) return st;
    group_of(c)->bufs[index_of(c)] = buf;
    return barrier(c, what);
}

// Rank 0 of the group: the group's sum into every buffer; with an outer comm, the local sum
// into its own buffer, the sum over the processes there, then a copy into the others.
static MxStatus reduce_group(Comm *c, LocalGroup *g, size_t count, DType dtype, void *queue) {
    SumParams p = {.n_in = g->size, .n_out = g->outer ? 1 : g->size, .count = count, .dtype = dtype};
    for (int r = 0; r < g->size; r++) {
        p.in[r] = g->bufs[r];
        if (r < p.n_out) p.out[r] = (void *)g->bufs[r];
    }
    if (c->ops->sum(&p, queue) != OPS_OK || c->ops->sync(queue) != OPS_OK) return op_failed(c, "the all-reduce sum");
    if (!g->outer) return MX_OK;
    if (g->outer->impl->all_reduce(g->outer, (void *)g->bufs[0], count, dtype, queue)) return outer_failed(c);
    if (g->size == 1) return MX_OK;
    SumParams copy = {.n_in = 1, .n_out = g->size - 1, .count = count, .dtype = dtype, .in = {g->bufs[0]}};
    for (int r = 1; r < g->size; r++) copy.out[r - 1] = (void *)g->bufs[r];
    if (c->ops->sum(&copy, queue) != OPS_OK || c->ops->sync(queue) != OPS_OK) return op_failed(c, "the all-reduce copy");
    return MX_OK;
}

static MxStatus local_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    LocalGroup *g = group_of(c);
    MxStatus st = publish(c, buf, queue, "an all-reduce");
    if (!st && index_of(c) == 0) st = reduce_group(c, g, count, dtype, queue);
    return st ? st : barrier(c, "the end of an all-reduce");
}

// Rank 0 of the group: each rank's slice into its columns of full[rows, vocab]. With an outer
// comm the group's ranks own consecutive slices, so they are placed in this process's block
// of columns first, and the outer comm gathers the blocks as if each process were one rank.
static MxStatus gather_group(Comm *c, LocalGroup *g, float *full, int rows, int vocab, int stride, void *queue) {
    float *dst = full; // without an outer comm, c is rank 0 and dst its full logits
    int width = vocab; // dst's row pitch
    if (g->outer) {
        int block_first = c->rank * stride, last = c->rank + g->size == c->size; // last: the uneven slice
        width = last ? vocab - block_first : g->size * stride;
        size_t need = (size_t)rows * (size_t)width;
        if (g->block_floats < need) {
            mx_free(g->block);
            g->block_floats = 0;
            if (!(g->block = mx_malloc(need * sizeof(float)))) return op_failed(c, "the logits gather's block");
            g->block_floats = need;
        }
        dst = g->block;
    }
    for (int r = 0; r < g->size; r++) {
        int first = (c->rank + r) * stride, len = c->rank + r == c->size - 1 ? vocab - first : stride;
        if (c->ops->copy_2d(dst + (size_t)r * (size_t)stride, (size_t)width * sizeof(float), g->bufs[r],
                            (size_t)len * sizeof(float), (size_t)len * sizeof(float), (size_t)rows, queue) != OPS_OK)
            return op_failed(c, "the logits gather");
    }
    if (c->ops->sync(queue) != OPS_OK) return op_failed(c, "the logits gather");
    if (g->outer && g->outer->impl->gather_vocab(g->outer, g->block, full, rows, vocab, g->size * stride, queue))
        return outer_failed(c);
    return MX_OK;
}

static MxStatus local_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride,
                                   void *queue) {
    MxStatus st = publish(c, local, queue, "the logits gather");
    if (!st && index_of(c) == 0) st = gather_group(c, group_of(c), full, rows, vocab, stride, queue);
    return st ? st : barrier(c, "the end of the logits gather");
}

static void release_group(LocalGroup *g) {
    pthread_mutex_lock(&g->mu);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        if (g->outer) g->outer->impl->destroy(g->outer);
        mx_free(g->block);
        mx_free(g);
    }
}

static void local_destroy(Comm *c) {
    release_group(group_of(c));
    mx_free(c);
}

static const CommImpl local_impl = {
    .name = "local",
    .capturable = false, // the ranks meet on the host
    .all_reduce = local_all_reduce,
    .gather_vocab = local_gather_vocab,
    .wait = local_wait,
    .abort = local_abort,
    .destroy = local_destroy,
};

MxStatus comm_local_create_spanning(int size, int first_rank, int world, Comm *outer, const Ops *ops, double timeout_s,
                                   Comm **comms) {
    if (size < 1 || size > OPS_MAX_RANKS || first_rank < 0 || first_rank + size > world || !(timeout_s > 0) ||
        (outer && !ops->host_memory)) {
        if (outer) outer->impl->destroy(outer);
        return mx_fail(MX_ERR_ARG, "local group of ranks %d..%d of %d (1..%d ranks), timeout %g s", first_rank,
                       first_rank + size - 1, world, OPS_MAX_RANKS, timeout_s);
    }
    LocalGroup *g = mx_calloc(1, sizeof *g);
    if (!g) {
        if (outer) outer->impl->destroy(outer);
        return mx_fail(MX_ERR_NOMEM, "comm group");
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->size = size;
    g->outer = outer;
    g->refs = 1; // held while the ranks are made, so a failure part way frees it once
    MxStatus st = MX_OK;
    for (int r = 0; r < size && !st; r++) {
        LocalComm *lc = mx_calloc(1, sizeof *lc);
        if (!lc) {
            st = mx_fail(MX_ERR_NOMEM, "comm group");
            for (int k = 0; k < r; k++) comm_destroy(comms[k]), comms[k] = NULL; // not freed again by the caller
            break;
        }
        lc->base = (Comm){.impl = &local_impl, .rank = first_rank + r, .size = world, .ops = ops, .timeout_s = timeout_s};
        lc->g = g;
        lc->index = r;
        g->refs++;
        comm_fault_init(&lc->base);
        comms[r] = &lc->base;
    }
    release_group(g);
    return st;
}

MxStatus comm_local_create(int size, const Ops *ops, double timeout_s, Comm **comms) {
    return comm_local_create_spanning(size, 0, size, NULL, ops, timeout_s, comms);
}
