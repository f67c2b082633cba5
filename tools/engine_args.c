// The engine's command-line flags (see engine_args.h).
#include "engine_args.h"

#include <limits.h>
#include <math.h>
#include <string.h>

void engine_args_init(EngineArgs *a) {
    MxEngineOptions d = mx_engine_options_default();
    *a = (EngineArgs){.block_size = d.block_size, .max_batched_tokens = d.max_batched_tokens, .max_seqs = d.max_seqs,
                      .kv_blocks = INT_MIN, .kv_fraction = NAN, .prefix_cache = "on", .graphs = "on", .tp = d.tp,
                      .comm = d.comm, .comm_timeout = d.comm_timeout_s};
}

int engine_args_specs(EngineArgs *a, ArgSpec *out) {
    const ArgSpec specs[ENGINE_ARG_COUNT] = {
        {"--max-batched-tokens", ARG_INT, &a->max_batched_tokens, "N",
         "tokens computed per step; longer prompts are prefilled in chunks (default 512)"},
        {"--max-seqs", ARG_INT, &a->max_seqs, "N", "requests running at once (default 64)"},
        {"--kv-blocks", ARG_INT, &a->kv_blocks, "N", "KV pool size in blocks (instead of --kv-fraction)"},
        {"--kv-fraction", ARG_DOUBLE, &a->kv_fraction, "F",
         "KV pool: this fraction of the device memory left after weights and workspace (default 0.9)"},
        {"--block-size", ARG_INT, &a->block_size, "N", "tokens per KV block (default 16)"},
        {"--prefix-cache", ARG_STRING, &a->prefix_cache, "on|off",
         "reuse the KV blocks of prompt prefixes shared between requests (default on)"},
        {"--graphs", ARG_STRING, &a->graphs, "on|off",
         "replay decode steps from CUDA graphs; off launches every op (default on)"},
        {"--tp", ARG_INT, &a->tp, "N", "split the model over N tensor-parallel ranks (default 1)"},
        {"--comm", ARG_STRING, &a->comm, "auto|threads|loopback|nccl|mpi",
         "how the ranks talk: threads (CPU), loopback (all ranks on one GPU), nccl (a GPU per rank, also "
         "across mpirun's processes), mpi (CPU ranks across mpirun's processes); auto picks (default)"},
        {"--comm-timeout", ARG_DOUBLE, &a->comm_timeout, "SECONDS",
         "longest wait for another rank before the run fails instead of hanging (default 60)"},
    };
    memcpy(out, specs, sizeof specs);
    return ENGINE_ARG_COUNT;
}

// Not given: kv_blocks INT_MIN, kv_fraction NaN (parse_double never yields NaN).
bool engine_args_pool_given(const EngineArgs *a) { return a->kv_blocks != INT_MIN || !isnan(a->kv_fraction); }

const char *engine_args_apply(const EngineArgs *a, MxEngineOptions *o) {
    if (a->block_size < 1 || a->block_size > 1024) return "--block-size must be in [1, 1024]";
    if (a->max_batched_tokens < 1) return "--max-batched-tokens must be >= 1";
    if (a->max_seqs < 1) return "--max-seqs must be >= 1";
    bool blocks = a->kv_blocks != INT_MIN, fraction = !isnan(a->kv_fraction);
    if (blocks && a->kv_blocks < 1) return "--kv-blocks must be >= 1";
    if (blocks && fraction) return "give --kv-blocks or --kv-fraction, not both";
    if (fraction && !(a->kv_fraction > 0 && a->kv_fraction <= 1)) return "--kv-fraction must be in (0, 1]";
    if (a->tp < 1 || a->tp > 64) return "--tp must be in [1, 64]";
    if (strcmp(a->comm, "auto") && strcmp(a->comm, "threads") && strcmp(a->comm, "loopback") && strcmp(a->comm, "nccl") &&
        strcmp(a->comm, "mpi"))
        return "--comm must be auto, threads, loopback, nccl or mpi";
    if (!(a->comm_timeout > 0 && a->comm_timeout <= 86400)) return "--comm-timeout must be in (0, 86400] seconds";
    bool on = strcmp(a->prefix_cache, "on") == 0;
    if (!on && strcmp(a->prefix_cache, "off") != 0) return "--prefix-cache must be on or off";
    bool graphs = strcmp(a->graphs, "on") == 0;
    if (!graphs && strcmp(a->graphs, "off") != 0) return "--graphs must be on or off";
    o->block_size = a->block_size;
    o->max_batched_tokens = a->max_batched_tokens;
    o->max_seqs = a->max_seqs;
    if (blocks) o->kv_blocks = a->kv_blocks;
    if (fraction) {
        o->kv_blocks = 0;
        o->kv_fraction = a->kv_fraction;
    }
    o->prefix_cache = on;
    o->graphs = graphs;
    o->tp = a->tp;
    o->comm = a->comm;
    o->comm_timeout_s = a->comm_timeout;
    return NULL;
}
