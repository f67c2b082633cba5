// comm.h between processes started by mpirun (cluster.h), one member each: the outer comm of
// a process's local group of CPU-backend ranks (comm_local_create_spanning). The all-reduce
// is MPI_Iallreduce and the gather MPI_Igatherv, each polled with the timeout.
// Activations are f32 on the CPU backend, so MPI's own float sum serves (OpenMPI gives every
// process the same result).
#include "comm.h"

#include "clock.h"

#if MYRMEX_HAVE_MPI

#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

#include "alloc.h"

typedef struct MpiComm {
    Comm base;
    bool aborted;
    char why[192];
    float *scratch; // rank 0: every rank's slice [size, rows, stride]
    size_t scratch_floats;
} MpiComm;

static MpiComm *mpi_of(Comm *c) { return (MpiComm *)c; }

static void mpi_abort(Comm *c, const char *why) {
    MpiComm *m = mpi_of(c);
    if (m->aborted) return;
    m->aborted = true;
    snprintf(m->why, sizeof m->why, "%s", why);
}

static MxStatus failed(Comm *c, const char *what) {
    char why[192];
    snprintf(why, sizeof why, "process %d: %s", c->rank, what);
    mpi_abort(c, why);
    return mx_fail(MX_ERR_COMM, "%s", why);
}

static MxStatus finish(Comm *c, MPI_Request *req, const char *what) {
    double deadline = mx_now_seconds() + c->timeout_s;
    for (long spins = 0;; spins++) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return failed(c, what);
        if (done) return MX_OK;
        if (mx_now_seconds() > deadline) {
            char msg[160];
            snprintf(msg, sizeof msg, "waited %.3g s for the other processes at %s", c->timeout_s, what);
            return failed(c, msg);
        }
        if (spins > 1000) usleep(20);
    }
}

static MxStatus mpi_wait(Comm *c, void *queue) {
    MpiComm *m = mpi_of(c);
    if (m->aborted) return mx_fail(MX_ERR_COMM, "%s", m->why);
    if (queue && c->ops->sync(queue) != OPS_OK) return failed(c, "a backend op failed");
    return MX_OK;
}

static MxStatus mpi_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    MxStatus st = mpi_wait(c, queue);
    if (st) return st;
    if (dtype != DT_F32 || count > (size_t)1 << 30) return failed(c, "an all-reduce of other than f32 (CPU backend only)");
    MPI_Request req;
    if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return failed(c, "MPI_Iallreduce failed");
    return finish(c, &req, "an all-reduce");
}

static MxStatus mpi_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride,
                                 void *queue) {
    MpiComm *m = mpi_of(c);
    MxStatus st = mpi_wait(c, queue);
    if (st) return st;
    size_t slice = (size_t)rows * (size_t)stride;
    int counts[SHARD_MAX_TP], displs[SHARD_MAX_TP];
    for (int r = 0; r < c->size; r++) {
        int len = r == c->size - 1 ? vocab - r * stride : stride;
        counts[r] = rows * len;
        displs[r] = (int)((size_t)r * slice);
    }
    if (c->rank == 0 && m->scratch_floats < slice * (size_t)c->size) {
        mx_free(m->scratch);
        m->scratch_floats = 0;
        if (!(m->scratch = mx_malloc(slice * (size_t)c->size * sizeof(float))))
            return failed(c, "out of memory for the logits gather");
        m->scratch_floats = slice * (size_t)c->size;
    }
    MPI_Request req;
    if (MPI_Igatherv(local, counts[c->rank], MPI_FLOAT, m->scratch, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD,
                     &req) != MPI_SUCCESS)
        return failed(c, "MPI_Igatherv failed");
    if ((st = finish(c, &req, "the logits gather"))) return st;
    if (c->rank != 0) return MX_OK;
    for (int r = 0; r < c->size; r++) {
        size_t len = (size_t)(counts[r] / (rows > 0 ? rows : 1));
        if (c->ops->copy_2d(full + (size_t)r * (size_t)stride, (size_t)vocab * sizeof(float), m->scratch + displs[r],
                            len * sizeof(float), len * sizeof(float), (size_t)rows, queue) != OPS_OK)
            return failed(c, "placing the logits gather");
    }
    return MX_OK;
}

static void mpi_destroy(Comm *c) {
    mx_free(mpi_of(c)->scratch);
    mx_free(c);
}

static const CommImpl mpi_impl = {
    .name = "mpi",
    .capturable = false, // the ranks meet on the host
    .all_reduce = mpi_all_reduce,
    .gather_vocab = mpi_gather_vocab,
    .wait = mpi_wait,
    .abort = mpi_abort,
    .destroy = mpi_destroy,
};

MxStatus comm_mpi_create(int rank, int size, const Ops *ops, double timeout_s, Comm **out) {
    *out = NULL;
    if (!ops->host_memory) return mx_fail(MX_ERR_ARG, "ranks in separate processes need the CPU backend in this build");
    if (size < 1 || size > SHARD_MAX_TP) return mx_fail(MX_ERR_ARG, "%d processes", size);
    MpiComm *m = mx_calloc(1, sizeof *m);
    if (!m) return mx_fail(MX_ERR_NOMEM, "comm");
    m->base = (Comm){.impl = &mpi_impl, .rank = rank, .size = size, .ops = ops, .timeout_s = timeout_s};
    *out = &m->base;
    return MX_OK;
}

#else

MxStatus comm_mpi_create(int rank, int size, const Ops *ops, double timeout_s, Comm **out) {
    (void)rank, (void)size, (void)ops, (void)timeout_s;
    *out = NULL;
    return mx_fail(MX_ERR_ARG, "this build has no MPI");
}

#endif
