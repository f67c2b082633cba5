// The processes of a model split across nodes, started by mpirun (OpenMPI; an optional build
// feature, MYRMEX_HAVE_MPI). Each process holds tp / processes consecutive tensor-parallel
// ranks (typically one process per node, one rank per GPU): process 0 runs the engine and,
// before every step, broadcasts the step's Batch (a fixed, validated layout with no
// pointers); the other processes load their slices of the model and mirror the steps until
// process 0 says stop (tp_model_follow). Without mpirun this layer is inert.
#ifndef MYRMEX_CLUSTER_H
#define MYRMEX_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "status.h"

// MPI_Init when launched by mpirun with more than one process; otherwise nothing. Errors:
// MX_ERR_ARG when mpirun started this process but the build has no MPI.
MxStatus cluster_init(void);
// MPI_Finalize; after a failed run, MPI_Abort (a peer may be stalled and never finalize).
void cluster_finalize(bool failed);
// This process's part of the tensor-parallel group failed: finalize aborts whatever the
// command's exit status (the other processes may be waiting for a step that never comes).
void cluster_mark_failed(void);
bool cluster_active(void); // more than one process
int cluster_rank(void);    // this process (0 without mpirun)
int cluster_size(void);    // processes (1 without mpirun)
int cluster_node_rank(void); // this process among those on its node (0 without mpirun): GPU offset

// Process 0's bytes[n] to every process (the NCCL unique id), bounded by timeout_s.
MxStatus cluster_bcast_bytes(void *bytes, size_t n, double timeout_s, const char *what);

// Process 0: the next step's batch, or the end of the run. Others: receive the next message
// (*stop set at the end), waiting as long as it takes; its counts are checked against b's
// capacities and its contents by the model before use. Broadcasts are bounded by timeout_s.
MxStatus cluster_send_step(const Batch *b, double timeout_s);
MxStatus cluster_send_stop(double timeout_s);
MxStatus cluster_recv_step(Batch *b, bool *stop);

// The same value on every process: the minimum of v over them (KV pool sizes).
MxStatus cluster_min_int(int *v, double timeout_s);
// MX_ERR_RANK_MISMATCH unless every process passes the same fingerprint.
MxStatus cluster_check_same(uint64_t fingerprint, const char *what, double timeout_s);

#endif
