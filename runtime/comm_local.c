// comm.h for ranks that share one address space: "threads" (CPU backend) and "loopback"
// (N virtual ranks on one GPU). Every collective is
//   wait for my queue -> publish my buffer -> barrier -> rank 0 reduces or gathers with the
//   backend's ops (sum, copy_2d) and waits for it -> barrier,
// so no rank reads or reuses a buffer while another writes it. Each barrier waits at most
// the timeout; a rank that times out aborts the group, which wakes and fails every other.
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
} LocalGroup;

typedef struct LocalComm {
    Comm base;
    LocalGroup *g;
} LocalComm;

static LocalGroup *group_of(Comm *c) { return ((LocalComm *)c)->g; }

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
    group_of(c)->bufs[c->rank] = buf;
    return barrier(c, what);
}

static MxStatus local_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    LocalGroup *g = group_of(c);
    MxStatus st = publish(c, buf, queue, "an all-reduce");
    if (st) return st;
    if (c->rank == 0) {
        SumParams p = {.n_in = g->size, .n_out = g->size, .count = count, .dtype = dtype};
        for (int r = 0; r < g->size; r++) {
            p.in[r] = g->bufs[r];
            p.out[r] = (void *)g->bufs[r];
        }
        if (c->ops->sum(&p, queue) != OPS_OK || c->ops->sync(queue) != OPS_OK) return op_failed(c, "the all-reduce sum");
    }
    return barrier(c, "the end of an all-reduce");
}

static MxStatus local_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride,
                                   void *queue) {
    LocalGroup *g = group_of(c);
    MxStatus st = publish(c, local, queue, "the logits gather");
    if (st) return st;
    if (c->rank == 0) {
        for (int r = 0; r < g->size; r++) {
            int first = r * stride, len = r == g->size - 1 ? vocab - first : stride;
            if (c->ops->copy_2d(full + first, (size_t)vocab * sizeof(float), g->bufs[r], (size_t)len * sizeof(float),
                                (size_t)len * sizeof(float), (size_t)rows, queue) != OPS_OK)
                return op_failed(c, "the logits gather");
        }
        if (c->ops->sync(queue) != OPS_OK) return op_failed(c, "the logits gather");
    }
    return barrier(c, "the end of the logits gather");
}

static void local_destroy(Comm *c) {
    LocalGroup *g = group_of(c);
    pthread_mutex_lock(&g->mu);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        mx_free(g);
    }
    mx_free(c);
}

static const CommImpl local_impl = {
    .name = "local",
    .all_reduce = local_all_reduce,
    .gather_vocab = local_gather_vocab,
    .wait = local_wait,
    .abort = local_abort,
    .destroy = local_destroy,
};

MxStatus comm_local_create(int size, const Ops *ops, double timeout_s, Comm **comms) {
    if (size < 1 || size > OPS_MAX_RANKS || !(timeout_s > 0))
        return mx_fail(MX_ERR_ARG, "local group of %d ranks (1..%d), timeout %g s", size, OPS_MAX_RANKS, timeout_s);
    LocalGroup *g = mx_calloc(1, sizeof *g);
    if (!g) return mx_fail(MX_ERR_NOMEM, "comm group");
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->size = size;
    for (int r = 0; r < size; r++) {
        LocalComm *lc = mx_calloc(1, sizeof *lc);
        if (!lc) {
            for (int k = 0; k < r; k++) comm_destroy(comms[k]);
            if (r == 0) {
                pthread_mutex_destroy(&g->mu);
                pthread_cond_destroy(&g->cv);
                mx_free(g);
            }
            return mx_fail(MX_ERR_NOMEM, "comm group");
        }
        lc->base = (Comm){.impl = &local_impl, .rank = r, .size = size, .ops = ops, .timeout_s = timeout_s};
        lc->g = g;
        g->refs++;
        comm_fault_init(&lc->base);
        comms[r] = &lc->base;
    }
    return MX_OK;
}
