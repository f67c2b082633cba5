// A model split over tensor-parallel ranks (DESIGN.md: Tensor parallelism): one Model per
// rank, each holding its slice of the weights (shard.h) and its own KV pool, and a comm
// between them (comm.h). Rank 0 runs on the caller's thread and owns what the scheduler
// uses (the block pool, the full logits, the sampled tokens); ranks 1.. each run on a host
// thread of their own and replay every step the caller runs.
//
// With tp 1 this is a plain Model with no threads and no comm. Under mpirun (cluster.h)
// each of P processes holds tp / P consecutive ranks (tp a multiple of P), on the next
// tp / P GPUs of its node for NCCL; process 0 holds rank 0 and broadcasts every step.
#ifndef MYRMEX_TP_MODEL_H
#define MYRMEX_TP_MODEL_H

#include <pthread.h>
#include <stdbool.h>

#include "comm.h"
#include "model.h"

typedef struct TpOptions {
    int tp;            // ranks (default 1)
    const char *comm;  // "auto" (default), "threads" (CPU), "loopback" (one GPU), "nccl" (a GPU per rank),
                       // "mpi" (CPU ranks in processes started by mpirun)
    double timeout_s;  // longest wait for another rank before the group is aborted (default 60)
} TpOptions;

TpOptions tp_options_default(void);

typedef struct TpModel {
    int tp;                   // ranks in all
    int n_local;              // ranks in this process: tp, or tp / processes under mpirun
    int first_rank;           // the global rank of ranks[0] (0 without mpirun)
    bool cluster;             // ranks in several processes; process 0 broadcasts each step
    double timeout_s;
    Model *ranks;             // [n_local]
    Comm **comms;             // [n_local] (NULL when tp 1)
    const char *comm_name;    // "none", "threads", "loopback", "nccl", "mpi"
    bool broken;              // a collective failed: every later step fails with MX_ERR_COMM
    // Local ranks 1..n_local-1: their threads and the step they are asked to run.
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long job;        // steps handed out
    int n_done;               // workers finished with the current job
    bool quit;
    const Batch *batch;
    MxStatus *status;         // [n_local] each rank's result of the current job
    char (*error)[256];       // [n_local] its error detail
} TpModel;

// Loads dir (or, when dir is NULL, dummy weights of *dummy's shapes) as this process's
// ranks starting on `backend`: every rank on it for threads, loopback and mpi, on
// cuda:(device + node offset + i) for nccl.
// The KV pool gets the same number of blocks on every rank: what the tightest rank affords
// (opt->kv_fraction of its free memory, split between the ranks sharing a device), or
// opt->kv_blocks. Errors: the model load's, MX_ERR_TP_SPLIT, MX_ERR_ARG (a comm that this
// backend or build cannot use), MX_ERR_DEVICE (too few GPUs for nccl), MX_ERR_COMM.
MxStatus tp_model_load(const char *dir, const ModelConfig *dummy, const Backend *backend, const ModelOptions *opt,
                       const TpOptions *tpo, TpModel *out);
void tp_model_free(TpModel *t);

// Rank 0's model: config, block pool, memory plan (per rank).
static inline Model *tp_leader(TpModel *t) { return &t->ranks[0]; }

// model_forward_sample / model_forward over every rank. A failed collective (a rank that
// errs, stalls past the timeout or dies) is MX_ERR_COMM and leaves the model broken.
MxStatus tp_model_forward_sample(TpModel *t, const Batch *b, const StepSampling *s, int32_t *tokens, float *logits);
MxStatus tp_model_forward(TpModel *t, const Batch *b, float *logits);

// Processes other than 0 under mpirun: mirror process 0's steps until it stops (MX_OK) or
// the run fails (MX_ERR_COMM: the caller exits non-zero).
MxStatus tp_model_follow(TpModel *t);

#endif
