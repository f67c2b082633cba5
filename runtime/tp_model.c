// Tensor-parallel ranks of one model (see tp_model.h).
#include "tp_model.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "cluster.h"

TpOptions tp_options_default(void) { return (TpOptions){.tp = 1, .comm = "auto", .timeout_s = 60.0}; }

// ---- the rank threads ----------------------------------------------------------------------

typedef struct Worker {
    TpModel *t;
    int rank;
} Worker;

// Records a rank's result for the caller (mx_last_error is per thread).
static void record(TpModel *t, int rank, MxStatus st) {
    t->status[rank] = st;
    snprintf(t->error[rank], sizeof t->error[rank], "%s", st ? mx_last_detail() : "");
}

// After a failed step: the rank's graphs go first, since NCCL cannot finish aborting a
// communicator whose collectives a live graph holds; then its comm is aborted, which stops
// its queued collectives and fails the other ranks' next calls.
static void abandon_rank(Model *m, const char *why) {
    model_drop_graphs(m);
    comm_abort(m->comm, why);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    TpModel *t = w->t;
    Model *m = &t->ranks[w->rank];
    MxStatus bound = backend_bind_thread(&m->backend);
    unsigned long seen = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->job == seen && !t->quit) pthread_cond_wait(&t->wake, &t->mu);
        if (t->quit) break;
        seen = t->job;
        const Batch *b = t->batch;
        pthread_mutex_unlock(&t->mu);
        MxStatus st = bound ? bound : model_forward(m, b, NULL);
        if (st) abandon_rank(m, "a rank's step failed");
        pthread_mutex_lock(&t->mu);
        record(t, w->rank, st);
        if (++t->n_done == t->n_threads) pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    mx_free(w);
    return NULL;
}

static MxStatus start_threads(TpModel *t) {
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->wake, NULL);
    pthread_cond_init(&t->done, NULL);
    t->threads = mx_calloc((size_t)t->n_local, sizeof *t->threads);
    if (!t->threads) return mx_fail(MX_ERR_NOMEM, "rank threads");
    for (int r = 1; r < t->n_local; r++) {
        Worker *w = mx_malloc(sizeof *w);
        if (!w) return mx_fail(MX_ERR_NOMEM, "rank threads");
        *w = (Worker){t, r};
        if (pthread_create(&t->threads[r - 1], NULL, worker_main, w) != 0) {
            mx_free(w);
            return mx_fail(MX_ERR_NOMEM, "starting the thread of rank %d", r);
        }
        t->n_threads++;
    }
    return MX_OK;
}

// ---- loading -------------------------------------------------------------------------------

// The comm to use: the named one, or for "auto" NCCL when every rank can have its own GPU,
// loopback on one GPU otherwise, threads on the CPU. Ranks in several processes (mpirun)
// meet over NCCL on GPUs and over MPI ("mpi") on the CPU.
static MxStatus choose_comm(const Backend *b, const TpOptions *o, int n_local, int first_device, bool cluster,
                            const char **out) {
    bool cuda = b->device >= 0;
    const char *c = o->comm ? o->comm : "auto";
    if (strcmp(c, "auto") == 0) {
        if (!cuda) c = cluster ? "mpi" : "threads";
        else if (cluster || (comm_nccl_available() && first_device + n_local <= backend_cuda_device_count())) c = "nccl";
        else c = "loopback";
    }
    if (strcmp(c, "threads") && strcmp(c, "loopback") && strcmp(c, "nccl") && strcmp(c, "mpi"))
        return mx_fail(MX_ERR_ARG, "unknown --comm '%s' (expected auto, threads, loopback, nccl or mpi)", c);
    if (strcmp(c, "threads") == 0 && cuda) return mx_fail(MX_ERR_ARG, "--comm threads is for the CPU backend; on a GPU use loopback or nccl");
    if ((strcmp(c, "loopback") == 0 || strcmp(c, "nccl") == 0) && !cuda)
        return mx_fail(MX_ERR_ARG, "--comm %s needs the CUDA backend", c);
    if (strcmp(c, "mpi") == 0 && (cuda || !cluster))
        return mx_fail(MX_ERR_ARG, "--comm mpi joins CPU-backend ranks in processes started by mpirun");
    if (cluster && (strcmp(c, "threads") == 0 || strcmp(c, "loopback") == 0))
        return mx_fail(MX_ERR_ARG, "--comm %s cannot span the processes mpirun started (use auto)", c);
    if (strcmp(c, "nccl") == 0) {
        if (!comm_nccl_available()) return mx_fail(MX_ERR_ARG, "--comm nccl: this build has no NCCL");
        int n = backend_cuda_device_count();
        if (first_device + n_local > n)
            return mx_fail(MX_ERR_DEVICE, "%d ranks over NCCL from cuda:%d need %d GPUs on this node; %d found%s", n_local,
                           first_device, first_device + n_local, n,
                           cluster ? "" : " (--comm loopback runs the ranks on one GPU)");
    }
    if (strcmp(c, "nccl") && n_local > OPS_MAX_RANKS)
        return mx_fail(MX_ERR_ARG, "--comm %s supports up to %d ranks per process", c, OPS_MAX_RANKS);
    *out = c;
    return MX_OK;
}

static MxStatus alloc_tables(TpModel *t) {
    size_t n = (size_t)t->n_local;
    t->ranks = mx_calloc(n, sizeof *t->ranks);
    t->comms = mx_calloc(n, sizeof *t->comms);
    t->status = mx_calloc(n, sizeof *t->status);
    t->error = mx_calloc(n, sizeof *t->error);
    if (t->ranks && t->comms && t->status && t->error) return MX_OK;
    tp_model_free(t);
    return mx_fail(MX_ERR_NOMEM, "rank tables");
}

// A hash of what every process must agree on: the config, the step capacities, and whether
// decode steps may be graphs (NCCL needs the ranks to capture together).
static uint64_t options_fingerprint(const Model *m) {
    const ModelConfig *c = &m->cfg;
    int64_t v[] = {c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
                   c->vocab_size, c->max_positions, c->sliding_window, c->tie_word_embeddings, m->opt.block_size,
                   m->opt.max_step_tokens, m->opt.max_step_seqs, m->opt.max_logit_rows, m->opt.tp, m->graphs_enabled,
                   (int64_t)(c->rope_theta * 1000), (int64_t)(c->rms_norm_eps * 1e9)};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) h = (h ^ (uint64_t)v[i]) * 0x100000001b3ull;
    return h;
}

// This process's ranks' comms: one local group, NCCL, or a local group joined to the other
// processes' over MPI.
static MxStatus create_comms(TpModel *t, const char *comm, const Ops *ops) {
    MxStatus st = MX_OK;
    if (strcmp(comm, "nccl") == 0) {
        int devices[SHARD_MAX_TP];
        for (int i = 0; i < t->n_local; i++) devices[i] = t->ranks[i].backend.device;
        // Process 0 makes the id; every process takes part in its broadcast, and one of all
        // zeros (never a real id) tells the others that process 0 failed.
        CommNcclId id = {{0}}, none = {{0}};
        MxStatus made = cluster_rank() == 0 ? comm_nccl_unique_id(&id) : MX_OK;
        if (t->cluster) st = cluster_bcast_bytes(id.bytes, sizeof id.bytes, t->timeout_s, "the NCCL id");
        if (!st && made) st = made;
        if (!st && memcmp(&id, &none, sizeof id) == 0) st = mx_fail(MX_ERR_COMM, "process 0 could not make the NCCL id");
        if (!st) st = comm_nccl_create_ranks(&id, t->tp, t->first_rank, t->n_local, devices, t->timeout_s, t->comms);
    } else if (t->cluster) {
        Comm *outer = NULL;
        if (!(st = comm_mpi_create(cluster_rank(), cluster_size(), ops, t->timeout_s, &outer)))
            st = comm_local_create_spanning(t->n_local, t->first_rank, t->tp, outer, ops, t->timeout_s, t->comms);
    } else {
        st = comm_local_create(t->tp, ops, t->timeout_s, t->comms);
    }
    for (int i = 0; i < t->n_local && !st; i++) {
        Model *m = &t->ranks[i];
        m->comm = t->comms[i];
        if (!(st = backend_bind_thread(&m->backend)))
            st = comm_reserve(m->comm, m->opt.max_logit_rows, m->shard.vocab_stride);
    }
    return st;
}

MxStatus tp_model_load(const char *dir, const ModelConfig *dummy, const Backend *backend, const ModelOptions *opt,
                       const TpOptions *tpo, TpModel *out) {
    memset(out, 0, sizeof *out);
    if (tpo->tp < 1 || tpo->tp > SHARD_MAX_TP) return mx_fail(MX_ERR_ARG, "--tp %d not in 1..%d", tpo->tp, SHARD_MAX_TP);
    if (!(tpo->timeout_s > 0)) return mx_fail(MX_ERR_ARG, "--comm-timeout %g must be > 0 seconds", tpo->timeout_s);
    int procs = cluster_size();
    if (tpo->tp % procs)
        return mx_fail(MX_ERR_ARG, "mpirun started %d processes but --tp %d does not split over them: give --tp %d "
                       "or a multiple of it (each process holds the same number of ranks)", procs, tpo->tp, procs);
    out->tp = tpo->tp;
    out->timeout_s = tpo->timeout_s;
    out->comm_name = "none";
    out->cluster = procs > 1;
    out->n_local = tpo->tp / procs;
    out->first_rank = cluster_rank() * out->n_local;
    // On GPUs each process on a node takes the next n_local devices.
    int first_device = backend->device + (backend->device >= 0 ? cluster_node_rank() * out->n_local : 0);
    const char *comm = "none";
    MxStatus st = tpo->tp > 1 ? choose_comm(backend, tpo, out->n_local, first_device, out->cluster, &comm) : MX_OK;
    if (st) return st;
    if ((st = alloc_tables(out))) return st;
    bool per_gpu = strcmp(comm, "nccl") == 0;
    // Weights and workspaces first, rank by rank, each on its device; then one KV size.
    for (int i = 0; i < out->n_local && !st; i++) {
        Backend b = *backend;
        int device = first_device + (per_gpu ? i : 0);
        if (device != backend->device) {
            char name[32];
            snprintf(name, sizeof name, "cuda:%d", device);
            st = backend_open(name, &b);
        }
        if (!st) st = backend_bind_thread(&b);
        ModelOptions o = *opt;
        o.tp = tpo->tp, o.rank = out->first_rank + i, o.defer_kv = true;
        if (o.rank > 0) o.progress = NULL;
        if (!st) st = dir ? model_load(dir, &b, &o, &out->ranks[i]) : model_load_dummy(dummy, &b, &o, &out->ranks[i]);
    }
    // Every process must agree on the options and the checkpoint before they talk. Processes
    // finish loading minutes apart (disks, page caches), so this first meeting waits up to
    // 30 minutes; a process whose load fails exits through MPI_Abort, which ends the wait.
    const double load_wait = tpo->timeout_s > 1800.0 ? tpo->timeout_s : 1800.0;
    if (!st && out->cluster &&
        !(st = cluster_check_same(options_fingerprint(&out->ranks[0]), "the model config or options", load_wait)))
        st = cluster_check_same(out->ranks[0].w.fingerprint, "the checkpoint", tpo->timeout_s);
    // The comms (NCCL's buffers included: it connects at creation) before the KV pool, whose
    // size then leaves them room.
    if (!st && tpo->tp > 1 && !(st = create_comms(out, comm, backend->ops))) out->comm_name = comm;
    int blocks = INT32_MAX;
    for (int i = 0; i < out->n_local && !st; i++) {
        int rb = 0;
        if (!(st = backend_bind_thread(&out->ranks[i].backend)))
            st = model_kv_budget(&out->ranks[i], per_gpu ? 1 : out->n_local, &rb);
        if (rb < blocks) blocks = rb;
    }
    if (!st && out->cluster) st = cluster_min_int(&blocks, tpo->timeout_s);
    for (int i = 0; i < out->n_local && !st; i++)
        if (!(st = backend_bind_thread(&out->ranks[i].backend))) st = model_alloc_kv(&out->ranks[i], blocks);
    if (!st && tpo->tp > 1) st = start_threads(out);
    if (!st) st = backend_bind_thread(&out->ranks[0].backend);
    if (st) {
        out->broken = true; // the comms (if made) are aborted, and no stop goes to other processes
        tp_model_free(out);
    }
    return st;
}

void tp_model_free(TpModel *t) {
    if (t->n_threads) {
        pthread_mutex_lock(&t->mu);
        t->quit = true;
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
        for (int i = 0; i < t->n_threads; i++) pthread_join(t->threads[i], NULL);
    }
    if (t->threads) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->wake);
        pthread_cond_destroy(&t->done);
    }
    if (t->cluster && cluster_rank() == 0 && t->comms && t->comms[0] && !t->broken)
        cluster_send_stop(t->timeout_s); // the other processes leave tp_model_follow
    // A broken group is aborted first, not destroyed: a destroy, or model_free's wait for its
    // queue, may wait on a collective whose peers are gone.
    for (int r = 0; t->broken && t->comms && r < t->n_local; r++) {
        if (!t->comms[r]) continue;
        backend_bind_thread(&t->ranks[r].backend);
        abandon_rank(&t->ranks[r], "the tensor-parallel group failed");
    }
    for (int r = 0; t->ranks && r < t->n_local; r++) {
        backend_bind_thread(&t->ranks[r].backend); // a no-op for a rank whose failed load zeroed it
        model_free(&t->ranks[r]);
    }
    for (int r = 0; t->comms && r < t->n_local; r++) comm_destroy(t->comms[r]);
    if (t->cluster && t->broken) cluster_mark_failed(); // the other processes may wait on us
    if (t->ranks && t->n_local > 0 && t->ranks[0].ops) backend_bind_thread(&t->ranks[0].backend);
    mx_free(t->ranks);
    mx_free(t->comms);
    mx_free(t->threads);
    mx_free(t->status);
    mx_free(t->error);
    memset(t, 0, sizeof *t);
}

// ---- steps ---------------------------------------------------------------------------------

// Hands b to local ranks 1.., runs local rank 0 here, waits for the others and reports the
// first failure (a rank's own error before the comm errors it caused on the others). Any
// failure leaves the model broken: the ranks may now disagree on their K/V.
static MxStatus run_local(TpModel *t, const Batch *b, const StepSampling *s, int32_t *tokens, float *logits) {
    Model *m0 = &t->ranks[0];
    if (t->n_threads) {
        pthread_mutex_lock(&t->mu);
        t->batch = b;
        t->n_done = 0;
        t->job++;
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
    }
    MxStatus st = s ? model_forward_sample(m0, b, s, tokens, logits) : model_forward(m0, b, logits);
    if (st) abandon_rank(m0, "a rank's step failed");
    record(t, 0, st);
    if (t->n_threads) {
        pthread_mutex_lock(&t->mu);
        while (t->n_done < t->n_threads) pthread_cond_wait(&t->done, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
    int first = -1;
    for (int r = 0; r < t->n_local; r++)
        if (t->status[r] && (first < 0 || (t->status[first] == MX_ERR_COMM && t->status[r] != MX_ERR_COMM))) first = r;
    if (first < 0) return MX_OK;
    t->broken = true;
    return mx_fail(t->status[first], "rank %d: %s", t->first_rank + first, t->error[first]);
}

static MxStatus run_all(TpModel *t, const Batch *b, const StepSampling *s, int32_t *tokens, float *logits) {
    if (t->broken) return mx_fail(MX_ERR_COMM, "the tensor-parallel group failed earlier; restart the engine");
    Model *m0 = &t->ranks[0];
    MxStatus st = backend_bind_thread(&m0->backend);
    if (st) return st;
    if (t->tp == 1) return s ? model_forward_sample(m0, b, s, tokens, logits) : model_forward(m0, b, logits);
    // What every rank would refuse alike is refused before any rank starts, so that a
    // failure during the step always means the ranks fell out of step.
    if ((s && (st = step_sampling_check(s, b->n_rows))) || (st = model_check_batch(m0, b))) return st;
    if (t->cluster && (st = cluster_send_step(b, t->timeout_s))) {
        t->broken = true;
        return st;
    }
    return run_local(t, b, s, tokens, logits);
}

MxStatus tp_model_forward_sample(TpModel *t, const Batch *b, const StepSampling *s, int32_t *tokens, float *logits) {
    if (!s || !tokens) return mx_fail(MX_ERR_ARG, "tp_model_forward_sample needs sampling parameters and an output");
    return run_all(t, b, s, tokens, logits);
}

MxStatus tp_model_forward(TpModel *t, const Batch *b, float *logits) { return run_all(t, b, NULL, NULL, logits); }

MxStatus tp_model_follow(TpModel *t) {
    if (!t->cluster || cluster_rank() == 0) return mx_fail(MX_ERR_ARG, "only processes other than 0 follow");
    Model *m = &t->ranks[0];
    Batch b;
    MxStatus st = model_batch_init(m, &b);
    for (bool stop = false; !st;) {
        if ((st = cluster_recv_step(&b, &stop)) || stop) break;
        st = run_local(t, &b, NULL, NULL, NULL);
    }
    if (st) t->broken = true;
    batch_destroy(&b);
    return st;
}
