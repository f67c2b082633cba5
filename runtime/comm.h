// Collectives between the tensor-parallel ranks of one model: the all-reduce after the
// attention output and MLP down projections, and the gather of the LM head's vocab slices.
//
// One interface, several transports (each a CommImpl):
//   local (comm_local.c)  ranks that share an address space, one host thread each: "threads"
//                         on the CPU backend, "loopback" for N virtual ranks on one GPU. The
//                         ranks meet at a host barrier and rank 0 sums with the backend's sum op.
//   nccl  (comm_nccl.c)   one GPU per rank, NCCL communicators created non-blocking; its
//                         collectives can be captured in the decode graphs (forward.c).
//   mpi   (comm_mpi.c)    between processes started by mpirun (cluster.h): each process's
//                         local group of CPU-backend ranks meets the others' through it.
//   NCCL spans processes by itself: the processes share one unique id (CommNcclId).
// Every wait is bounded by the timeout: a rank that fails, hangs or never arrives turns into
// MX_ERR_COMM on every rank, never a hang. The owner then aborts each rank's comm
// (comm_abort), after destroying the graphs that captured its collectives.
#ifndef MYRMEX_COMM_H
#define MYRMEX_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "../kernels/kernels.h"
#include "shard.h"
#include "status.h"

typedef struct Comm Comm;

typedef struct CommImpl {
    const char *name;
    // Its collectives only queue work on the rank's stream, so a graph captured around them
    // replays them (NCCL); the local and MPI comms meet on the host and cannot be captured.
    bool capturable;
    // Sizes what gather_vocab needs for up to max_rows rows of `stride` columns, before the
    // first step: a step then never allocates, and a captured graph's buffers stay valid.
    // NULL when the comm needs nothing.
    MxStatus (*reserve)(Comm *c, int max_rows, int stride);
    // buf[count] (backend memory, dtype) = the sum of every rank's buf, in rank order.
    MxStatus (*all_reduce)(Comm *c, void *buf, size_t count, DType dtype, void *queue);
    // Rank r's local[rows, vocab_len_r] f32 into columns [r * stride, ...) of rank 0's
    // full[rows, vocab] (full is NULL on the other ranks); rows and stride within the reserve.
    MxStatus (*gather_vocab)(Comm *c, const float *local, float *full, int rows, int vocab, int stride, void *queue);
    // Waits for everything queued on `queue` (the step's end), bounded by the timeout.
    MxStatus (*wait)(Comm *c, void *queue);
    // Aborts this rank's communicator (stopping its queued collectives) and makes every
    // rank's current and future calls fail with MX_ERR_COMM (idempotent).
    void (*abort)(Comm *c, const char *why);
    void (*destroy)(Comm *c);
} CommImpl;

struct Comm {
    const CommImpl *impl;
    int rank, size;
    const Ops *ops;
    double timeout_s;
    long calls;       // collectives so far (for the fault hook)
    int fault_kind;   // 0 none, 1 stall, 2 exit: see comm_fault_point
    long fault_after;
};

// Called once per rank after creation, before any step (the device bound to the rank).
MxStatus comm_reserve(Comm *c, int max_rows, int stride);
bool comm_capturable(const Comm *c);
MxStatus comm_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue);
MxStatus comm_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride, void *queue);
MxStatus comm_wait(Comm *c, void *queue);
void comm_abort(Comm *c, const char *why);
void comm_destroy(Comm *c);

// Ranks [0, size) of one local group (threads / loopback) on `ops`; comms[size] out. Each
// comm is used by one thread. Errors: MX_ERR_ARG (size not in 1..OPS_MAX_RANKS),
// MX_ERR_NOMEM.
MxStatus comm_local_create(int size, const Ops *ops, double timeout_s, Comm **comms);
// This process's ranks [first_rank, first_rank + size) of `world` ranks that span processes:
// a local group whose rank 0 joins `outer` (this process's comm_mpi, one rank per process)
// for the part between processes. Takes outer (destroyed with the group, or on failure).
// Host-memory backends only.
MxStatus comm_local_create_spanning(int size, int first_rank, int world, Comm *outer, const Ops *ops, double timeout_s,
                                   Comm **comms);

// Whether this build has NCCL; and its group of `size` ranks on CUDA devices devices[size],
// one queue each (their streams), created non-blocking within the timeout.
bool comm_nccl_available(void);
MxStatus comm_nccl_create(int size, const int *devices, double timeout_s, Comm **comms);

// NCCL across processes: process 0 makes the id and sends its bytes to the others
// (cluster_bcast_bytes); each process then creates its ranks [first_rank, first_rank +
// n_local) of `world` on devices[n_local].
typedef struct CommNcclId {
    unsigned char bytes[128]; // NCCL_UNIQUE_ID_BYTES
} CommNcclId;
MxStatus comm_nccl_unique_id(CommNcclId *id);
MxStatus comm_nccl_create_ranks(const CommNcclId *id, int world, int first_rank, int n_local, const int *devices,
                                double timeout_s, Comm **comms);

// This process as member `rank` of `size` processes started by mpirun (cluster.h), on a
// host-memory backend: the outer comm of comm_local_create_spanning. Errors: MX_ERR_ARG (no
// MPI in this build, or a device backend).
MxStatus comm_mpi_create(int rank, int size, const Ops *ops, double timeout_s, Comm **out);

// Fault injection for the fault tests: with MYRMEX_FAULT="RANK:stall:N" (or "RANK:exit:N")
// in the environment, rank RANK stops answering (or exits the process with status 3) at
// its N-th collective. Read once per comm at creation. Collectives are counted as the host
// issues them: those inside a replayed graph are not (use --graphs off over NCCL).
void comm_fault_init(Comm *c);

#endif
