// comm.h over NCCL: one GPU per rank, the ranks' communicators created non-blocking, and
// every host-side wait a poll of the stream and ncclCommGetAsyncError bounded by the
// timeout. On an error or a timeout the rank flags the group, which fails every local rank's
// next call; each rank's owner then drops the graphs that captured its collectives and
// aborts its communicator (comm_abort): NCCL cannot finish an abort while such graphs live.
// Built only with NCCL (MYRMEX_HAVE_NCCL).
#include "comm.h"

#include "clock.h"

#if MYRMEX_HAVE_NCCL

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "ops_cuda.h"

typedef struct NcclGroup {
    atomic_bool aborted; // set by the first rank that fails; the others fail at their next call
    atomic_int refs;
} NcclGroup;

typedef struct NcclComm {
    Comm base;
    NcclGroup *g;
    ncclComm_t nc;
    float *scratch;      // rank 0: ranks 1..'s logits slices [size - 1, rows, stride] (reserve)
    int max_rows, stride; // what reserve sized it for
} NcclComm;

static NcclComm *nccl_of(Comm *c) { return (NcclComm *)c; }

static void nccl_abort(Comm *c, const char *why) {
    NcclComm *n = nccl_of(c);
    atomic_store(&n->g->aborted, true);
    if (n->nc) {
        ncclCommAbort(n->nc);
        n->nc = NULL;
        fprintf(stderr, "myrmex: rank %d aborted its NCCL communicator: %s\n", c->rank, why);
    }
}

// Flags the group failed; the communicator is aborted by comm_abort (see the top).
static MxStatus fail(Comm *c, const char *what, const char *detail) {
    atomic_store(&nccl_of(c)->g->aborted, true);
    return mx_fail(MX_ERR_COMM, "rank %d: %s (%s)", c->rank, what, detail);
}

// Polls until the communicator has no operation in progress, or fails.
static MxStatus settle(Comm *c, ncclResult_t rc, const char *what) {
    NcclComm *n = nccl_of(c);
    double deadline = mx_now_seconds() + c->timeout_s;
    while (rc == ncclInProgress) {
        if (atomic_load(&n->g->aborted)) return fail(c, what, "another rank failed");
        if (mx_now_seconds() > deadline) return fail(c, what, "timed out");
        usleep(20);
        ncclCommGetAsyncError(n->nc, &rc);
    }
    return rc == ncclSuccess ? MX_OK : fail(c, what, ncclGetErrorString(rc));
}

static MxStatus live(Comm *c) {
    NcclComm *n = nccl_of(c);
    if (!n->nc || atomic_load(&n->g->aborted))
        return mx_fail(MX_ERR_COMM, "rank %d: the tensor-parallel group was aborted", c->rank);
    return MX_OK;
}

// NCCL (2.22 and later) connects ranks and allocates its buffers at their first collectives
// by default; here it does so at creation, so that the KV pool, sized after the comms, leaves
// them room. A value the user set wins. Called before NCCL is first used, so no other thread
// reads the environment meanwhile.
static void connect_at_creation(void) { setenv("NCCL_RUNTIME_CONNECT", "0", 0); }

static ncclDataType_t nccl_type(DType t) {
    return t == DT_BF16 ? ncclBfloat16 : t == DT_F16 ? ncclFloat16 : ncclFloat32;
}

static MxStatus nccl_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    MxStatus st = live(c);
    if (st) return st;
    cudaStream_t s = (cudaStream_t)ops_cuda_stream(queue);
    return settle(c, ncclAllReduce(buf, buf, count, nccl_type(dtype), ncclSum, nccl_of(c)->nc, s), "all-reduce");
}

// Rank 0's scratch, allocated here once: allocating in a step could wait on a queued
// collective whose peer died, and a captured graph keeps the pointer.
static MxStatus nccl_reserve(Comm *c, int max_rows, int stride) {
    NcclComm *n = nccl_of(c);
    if (n->max_rows) return mx_fail(MX_ERR_ARG, "rank %d: the comm's buffers are reserved once", c->rank);
    size_t floats = (size_t)(c->size - 1) * (size_t)max_rows * (size_t)stride;
    if (c->rank == 0 && floats) {
        if (cudaMalloc((void **)&n->scratch, floats * sizeof(float)) != cudaSuccess) {
            cudaGetLastError();
            return mx_fail(MX_ERR_NOMEM, "rank 0's logits gather buffer: %.1f MiB of device memory",
                           (double)floats * sizeof(float) / 1048576.0);
        }
    }
    n->max_rows = max_rows, n->stride = stride;
    return MX_OK;
}

// Rank r != 0 sends its slice; rank 0 receives each into scratch, then places every slice
// in the columns it owns of the full rows.
static MxStatus nccl_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride,
                                  void *queue) {
    NcclComm *n = nccl_of(c);
    MxStatus st = live(c);
    if (st) return st;
    if (rows > n->max_rows || stride > n->stride)
        return fail(c, "logits gather", "more rows or columns than its reserve");
    cudaStream_t s = (cudaStream_t)ops_cuda_stream(queue);
    size_t slice = (size_t)rows * (size_t)stride;
    ncclResult_t rc = ncclGroupStart();
    for (int r = 1; r < c->size && rc == ncclSuccess; r++) {
        int len = r == c->size - 1 ? vocab - r * stride : stride;
        if (c->rank == 0)
            rc = ncclRecv(n->scratch + (size_t)(r - 1) * slice, (size_t)rows * (size_t)len, ncclFloat32, r, n->nc, s);
        else if (c->rank == r) rc = ncclSend(local, (size_t)rows * (size_t)len, ncclFloat32, 0, n->nc, s);
    }
    ncclResult_t end = ncclGroupEnd();
    if ((st = settle(c, rc != ncclSuccess ? rc : end, "logits gather"))) return st;
    if (c->rank != 0) return MX_OK;
    for (int r = 0; r < c->size; r++) {
        int len = r == c->size - 1 ? vocab - r * stride : stride;
        const float *src = r == 0 ? local : n->scratch + (size_t)(r - 1) * slice;
        if (c->ops->copy_2d(full + (size_t)r * (size_t)stride, (size_t)vocab * sizeof(float), src,
                            (size_t)len * sizeof(float), (size_t)len * sizeof(float), (size_t)rows, queue) != OPS_OK)
            return fail(c, "logits gather", "a device copy failed");
    }
    return MX_OK;
}

static MxStatus nccl_wait(Comm *c, void *queue) {
    NcclComm *n = nccl_of(c);
    MxStatus st = live(c);
    if (st || !queue) return st;
    cudaStream_t s = (cudaStream_t)ops_cuda_stream(queue);
    double deadline = mx_now_seconds() + c->timeout_s;
    for (;;) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaSuccess) return MX_OK;
        if (e != cudaErrorNotReady) return fail(c, "waiting for the step", cudaGetErrorString(e));
        ncclResult_t rc = ncclSuccess;
        ncclCommGetAsyncError(n->nc, &rc);
        if (rc != ncclSuccess && rc != ncclInProgress) return fail(c, "waiting for the step", ncclGetErrorString(rc));
        if (atomic_load(&n->g->aborted)) return fail(c, "waiting for the step", "another rank failed");
        if (mx_now_seconds() > deadline) return fail(c, "waiting for the step", "timed out");
        usleep(20);
    }
}

static void nccl_destroy(Comm *c) {
    NcclComm *n = nccl_of(c);
    if (n->nc) ncclCommDestroy(n->nc);
    cudaFree(n->scratch);
    if (atomic_fetch_sub(&n->g->refs, 1) == 1) mx_free(n->g);
    mx_free(n);
}

static const CommImpl nccl_impl = {
    .name = "nccl",
    .capturable = true,
    .reserve = nccl_reserve,
    .all_reduce = nccl_all_reduce,
    .gather_vocab = nccl_gather_vocab,
    .wait = nccl_wait,
    .abort = nccl_abort,
    .destroy = nccl_destroy,
};

bool comm_nccl_available(void) { return true; }

_Static_assert(sizeof(ncclUniqueId) == sizeof(CommNcclId), "CommNcclId holds an ncclUniqueId");

MxStatus comm_nccl_unique_id(CommNcclId *id) {
    connect_at_creation();
    ncclUniqueId u;
    if (ncclGetUniqueId(&u) != ncclSuccess) return mx_fail(MX_ERR_COMM, "ncclGetUniqueId failed");
    memcpy(id->bytes, &u, sizeof u);
    return MX_OK;
}

MxStatus comm_nccl_create(int size, const int *devices, double timeout_s, Comm **comms) {
    CommNcclId id;
    MxStatus st = comm_nccl_unique_id(&id);
    return st ? st : comm_nccl_create_ranks(&id, size, 0, size, devices, timeout_s, comms);
}

MxStatus comm_nccl_create_ranks(const CommNcclId *uid, int world, int first_rank, int n_local, const int *devices,
                                double timeout_s, Comm **comms) {
    if (world < 1 || world > SHARD_MAX_TP || n_local < 1 || first_rank < 0 || first_rank + n_local > world ||
        !(timeout_s > 0))
        return mx_fail(MX_ERR_ARG, "NCCL ranks %d..%d of %d", first_rank, first_rank + n_local - 1, world);
    connect_at_creation();
    ncclUniqueId id;
    memcpy(&id, uid->bytes, sizeof id);
    NcclGroup *g = mx_calloc(1, sizeof *g);
    NcclComm **n = mx_calloc((size_t)n_local, sizeof *n);
    if (!g || !n) {
        mx_free(g);
        mx_free(n);
        return mx_fail(MX_ERR_NOMEM, "NCCL group");
    }
    atomic_init(&g->refs, n_local);
    MxStatus st = MX_OK;
    for (int i = 0; i < n_local; i++) {
        if (!(n[i] = mx_calloc(1, sizeof **n))) st = mx_fail(MX_ERR_NOMEM, "NCCL group");
        else n[i]->base = (Comm){.impl = &nccl_impl, .rank = first_rank + i, .size = world, .ops = &ops_cuda,
                                 .timeout_s = timeout_s};
        if (n[i]) n[i]->g = g;
    }
    // Non-blocking init of every local rank in one group call, then a bounded poll of each
    // (the other processes' ranks join the same communicator through the shared id).
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t rc = st ? ncclInternalError : ncclGroupStart();
    for (int i = 0; i < n_local && rc == ncclSuccess; i++) {
        cudaSetDevice(devices[i]);
        rc = ncclCommInitRankConfig(&n[i]->nc, world, id, first_rank + i, &config);
        if (rc == ncclInProgress) rc = ncclSuccess;
    }
    if (!st) {
        ncclResult_t end = ncclGroupEnd();
        if (rc == ncclSuccess && end != ncclInProgress) rc = end;
    }
    const double deadline = mx_now_seconds() + timeout_s; // for all local ranks together
    for (int i = 0; i < n_local && !st; i++) {
        cudaSetDevice(devices[i]);
        ncclResult_t state = ncclInProgress;
        while (rc == ncclSuccess && n[i]->nc && ncclCommGetAsyncError(n[i]->nc, &state) == ncclSuccess &&
               state == ncclInProgress && mx_now_seconds() < deadline)
            usleep(100);
        if (rc != ncclSuccess || state != ncclSuccess)
            st = mx_fail(MX_ERR_COMM, "creating the NCCL communicator of rank %d on cuda:%d: %s", first_rank + i,
                         devices[i], rc != ncclSuccess ? ncclGetErrorString(rc)
                         : state == ncclInProgress ? "timed out (are all ranks started?)" : ncclGetErrorString(state));
    }
    if (devices[0] >= 0) cudaSetDevice(devices[0]);
    for (int i = 0; i < n_local; i++) {
        if (st && n[i] && n[i]->nc) {
            ncclCommAbort(n[i]->nc);
            n[i]->nc = NULL;
        }
        comms[i] = n[i] ? &n[i]->base : NULL;
        if (n[i]) comm_fault_init(&n[i]->base);
    }
    if (st) {
        for (int i = 0; i < n_local; i++) mx_free(n[i]);
        mx_free(g);
        for (int i = 0; i < n_local; i++) comms[i] = NULL;
    }
    mx_free(n);
    return st;
}

#else // no NCCL in this build

bool comm_nccl_available(void) { return false; }

static MxStatus no_nccl(void) {
    return mx_fail(MX_ERR_DEVICE, "this build has no NCCL (it needs the CUDA backend and libnccl)");
}

MxStatus comm_nccl_create(int size, const int *devices, double timeout_s, Comm **comms) {
    (void)size, (void)devices, (void)timeout_s, (void)comms;
    return no_nccl();
}

MxStatus comm_nccl_unique_id(CommNcclId *id) {
    (void)id;
    return no_nccl();
}

MxStatus comm_nccl_create_ranks(const CommNcclId *id, int world, int first_rank, int n_local, const int *devices,
                                double timeout_s, Comm **comms) {
    (void)id, (void)world, (void)first_rank, (void)n_local, (void)devices, (void)timeout_s, (void)comms;
    return no_nccl();
}

#endif
