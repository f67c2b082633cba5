// Processes started by mpirun (see cluster.h). Every MPI wait is a non-blocking call polled
// with a deadline, so a dead or stalled process turns into MX_ERR_COMM, not a hang.
#include "cluster.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool launched_by_mpirun(void) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    return n && atoi(n) > 1;
}

#if MYRMEX_HAVE_MPI

#include <mpi.h>

static int world_rank = 0, world_size = 1, node_rank = 0;
static bool initialised, marked_failed;

MxStatus cluster_init(void) {
    if (!launched_by_mpirun() || initialised) return MX_OK;
    int provided = 0;
    // The engine may run on a thread other than main (serve): calls are serialised, not
    // concurrent.
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return mx_fail(MX_ERR_COMM, "MPI_Init failed");
    initialised = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    // This process's index among those sharing its node (they must not share GPUs).
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &node_rank);
        MPI_Comm_free(&node);
    }
    if (provided < MPI_THREAD_SERIALIZED) {
        fprintf(stderr, "myrmex: this MPI library does not support calls from more than one thread\n");
    }
    return MX_OK;
}

void cluster_mark_failed(void) { marked_failed = true; }

void cluster_finalize(bool failed) {
    if (!initialised) return;
    initialised = false;
    if (failed || marked_failed) MPI_Abort(MPI_COMM_WORLD, 1);
    else MPI_Finalize();
}

bool cluster_active(void) { return world_size > 1; }
int cluster_rank(void) { return world_rank; }
int cluster_size(void) { return world_size; }
int cluster_node_rank(void) { return node_rank; }

// Polls req to completion; timeout_s <= 0 waits forever (a follower between steps).
static MxStatus finish(MPI_Request *req, double timeout_s, const char *what) {
    double deadline = mx_now_seconds() + timeout_s;
    for (long spins = 0;; spins++) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return mx_fail(MX_ERR_COMM, "process %d: %s failed", world_rank, what);
        if (done) return MX_OK;
        if (timeout_s > 0 && mx_now_seconds() > deadline)
            return mx_fail(MX_ERR_COMM, "process %d waited %.3g s for the other processes at %s", world_rank, timeout_s,
                           what);
        if (spins > 1000) usleep(spins > 100000 ? 1000 : 20); // spin briefly, then back off
    }
}

// The step message: a header of counts, then the batch's arrays in a fixed order.
#define STEP_MAGIC 0x5053584du // "MXSP"
typedef struct StepHeader {
    uint32_t magic;
    int32_t stop;
    int32_t n_tokens, n_seqs, n_kv_indices, n_rows;
    uint64_t payload_bytes;
} StepHeader;

static size_t payload_size(const StepHeader *h) {
    return (size_t)h->n_tokens * (2 * sizeof(int32_t) + sizeof(int64_t)) +
           ((size_t)h->n_seqs + 1) * 2 * sizeof(int32_t) + (size_t)h->n_seqs * 2 * sizeof(int32_t) +
           (size_t)h->n_kv_indices * sizeof(int32_t) + (size_t)h->n_rows * sizeof(int32_t);
}

typedef struct Field {
    void *p;
    size_t bytes;
} Field;

// The batch's arrays, in message order.
static int fields(const Batch *b, const StepHeader *h, Field *f) {
    size_t t = (size_t)h->n_tokens, s = (size_t)h->n_seqs;
    int n = 0;
    f[n++] = (Field){b->tokens, t * sizeof(int32_t)};
    f[n++] = (Field){b->positions, t * sizeof(int32_t)};
    f[n++] = (Field){b->slot_mapping, t * sizeof(int64_t)};
    f[n++] = (Field){b->q_start, (s + 1) * sizeof(int32_t)};
    f[n++] = (Field){b->kv_indptr, (s + 1) * sizeof(int32_t)};
    f[n++] = (Field){b->ctx_len, s * sizeof(int32_t)};
    f[n++] = (Field){b->last_page_len, s * sizeof(int32_t)};
    f[n++] = (Field){b->kv_indices, (size_t)h->n_kv_indices * sizeof(int32_t)};
    f[n++] = (Field){b->logits_rows, (size_t)h->n_rows * sizeof(int32_t)};
    return n;
}

static MxStatus bcast(void *buf, size_t bytes, double timeout_s, const char *what) {
    if (bytes > (size_t)1 << 30) return mx_fail(MX_ERR_ARG, "%s of %zu bytes", what, bytes);
    MPI_Request req;
    if (MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return mx_fail(MX_ERR_COMM, "process %d: broadcasting %s failed", world_rank, what);
    return finish(&req, timeout_s, what);
}

static char *payload;
static size_t payload_cap;

static MxStatus reserve(size_t bytes) {
    if (bytes <= payload_cap) return MX_OK;
    char *p = realloc(payload, bytes);
    if (!p) return mx_fail(MX_ERR_NOMEM, "step message of %zu bytes", bytes);
    payload = p, payload_cap = bytes;
    return MX_OK;
}

MxStatus cluster_bcast_bytes(void *buf, size_t bytes, double timeout_s, const char *what) {
    return bcast(buf, bytes, timeout_s, what);
}

MxStatus cluster_send_step(const Batch *b, double timeout_s) {
    StepHeader h = {.magic = STEP_MAGIC, .n_tokens = b->n_tokens, .n_seqs = b->n_seqs,
                    .n_kv_indices = b->n_kv_indices, .n_rows = b->n_rows};
    h.payload_bytes = payload_size(&h);
    MxStatus st = reserve(h.payload_bytes);
    if (st) return st;
    Field f[9];
    size_t at = 0;
    for (int i = 0, n = fields(b, &h, f); i < n; i++) {
        if (f[i].bytes) memcpy(payload + at, f[i].p, f[i].bytes);
        at += f[i].bytes;
    }
    if ((st = bcast(&h, sizeof h, timeout_s, "the step header"))) return st;
    return bcast(payload, h.payload_bytes, timeout_s, "the step batch");
}

MxStatus cluster_send_stop(double timeout_s) {
    StepHeader h = {.magic = STEP_MAGIC, .stop = 1};
    return bcast(&h, sizeof h, timeout_s, "the stop message");
}

MxStatus cluster_recv_step(Batch *b, bool *stop) {
    StepHeader h;
    *stop = false;
    MxStatus st = bcast(&h, sizeof h, 0, "the step header");
    if (st) return st;
    if (h.magic != STEP_MAGIC) return mx_fail(MX_ERR_COMM, "step message with a bad magic number");
    if (h.stop) {
        *stop = true;
        return MX_OK;
    }
    if (h.n_tokens < 1 || h.n_tokens > b->max_tokens || h.n_seqs < 1 || h.n_seqs > b->max_seqs ||
        h.n_kv_indices < 0 || h.n_kv_indices > b->max_kv_indices || h.n_rows < 0 || h.n_rows > b->max_rows ||
        h.payload_bytes != payload_size(&h))
        return mx_fail(MX_ERR_COMM, "step message of %d tokens, %d sequences, %d blocks, %d rows is over this "
                       "process's capacities or inconsistent (do all processes have the same options?)",
                       h.n_tokens, h.n_seqs, h.n_kv_indices, h.n_rows);
    if ((st = reserve(h.payload_bytes)) || (st = bcast(payload, h.payload_bytes, 60.0, "the step batch"))) return st;
    b->n_tokens = h.n_tokens, b->n_seqs = h.n_seqs, b->n_kv_indices = h.n_kv_indices, b->n_rows = h.n_rows;
    Field f[9];
    size_t at = 0;
    for (int i = 0, n = fields(b, &h, f); i < n; i++) {
        if (f[i].bytes) memcpy(f[i].p, payload + at, f[i].bytes);
        at += f[i].bytes;
    }
    // Its structure (offsets, positions, slots, rows) is checked by model_check_batch.
    return MX_OK;
}

MxStatus cluster_min_int(int *v, double timeout_s) {
    int in = *v, out = 0;
    MPI_Request req;
    if (MPI_Iallreduce(&in, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return mx_fail(MX_ERR_COMM, "agreeing on the KV pool size failed");
    MxStatus st = finish(&req, timeout_s, "agreeing on the KV pool size");
    if (!st) *v = out;
    return st;
}

MxStatus cluster_check_same(uint64_t fingerprint, const char *what, double timeout_s) {
    uint64_t mine[2] = {fingerprint, ~fingerprint}, agreed[2] = {0, 0};
    MPI_Request req;
    // max(x) and max(~x) agree with x on every process only when every x is the same
    if (MPI_Iallreduce(mine, agreed, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return mx_fail(MX_ERR_COMM, "comparing %s failed", what);
    MxStatus st = finish(&req, timeout_s, "comparing the processes' models");
    if (st) return st;
    if (agreed[0] != fingerprint || agreed[1] != ~fingerprint)
        return mx_fail(MX_ERR_RANK_MISMATCH, "process %d: %s differs from another process's", world_rank, what);
    return MX_OK;
}

#else // built without MPI

MxStatus cluster_init(void) {
    if (launched_by_mpirun())
        return mx_fail(MX_ERR_ARG, "started by mpirun, but this build has no MPI (install libopenmpi-dev and rebuild)");
    return MX_OK;
}
void cluster_finalize(bool failed) { (void)failed; }
void cluster_mark_failed(void) {}
bool cluster_active(void) { return false; }
int cluster_rank(void) { return 0; }
int cluster_size(void) { return 1; }
int cluster_node_rank(void) { return 0; }
MxStatus cluster_bcast_bytes(void *buf, size_t bytes, double timeout_s, const char *what) {
    (void)buf, (void)bytes, (void)timeout_s, (void)what;
    return MX_OK; // one process: it already has its own bytes
}
MxStatus cluster_send_step(const Batch *b, double timeout_s) {
    (void)b, (void)timeout_s;
    return mx_fail(MX_ERR_ARG, "no MPI in this build");
}
MxStatus cluster_send_stop(double timeout_s) {
    (void)timeout_s;
    return MX_OK;
}
MxStatus cluster_recv_step(Batch *b, bool *stop) {
    (void)b;
    *stop = true;
    return mx_fail(MX_ERR_ARG, "no MPI in this build");
}
MxStatus cluster_min_int(int *v, double timeout_s) {
    (void)v, (void)timeout_s;
    return MX_OK;
}
MxStatus cluster_check_same(uint64_t fingerprint, const char *what, double timeout_s) {
    (void)fingerprint, (void)what, (void)timeout_s;
    return MX_OK;
}

#endif
