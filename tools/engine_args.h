// The engine's command-line flags, shared by the commands that run an engine (generate;
// serve and bench later): one spec table to append to a command's own, one check that
// turns the values into MxEngineOptions.
//
//   EngineArgs ea;
//   engine_args_init(&ea);
//   ArgSpec specs[32] = {...the command's own...};
//   int n = own + engine_args_specs(&ea, specs + own);
//   ... args_parse(..., specs, n, ...) ...
//   const char *bad = engine_args_apply(&ea, &opt);
//   if (bad) return args_usage_error("generate", "%s", bad);
#ifndef MYRMEX_ENGINE_ARGS_H
#define MYRMEX_ENGINE_ARGS_H

#include <stdbool.h>

#include "../runtime/myrmex.h"
#include "args.h"

#define ENGINE_ARG_COUNT 10

typedef struct EngineArgs {
    int block_size;           // --block-size N (default 16)
    int max_batched_tokens;   // --max-batched-tokens N (default 512)
    int max_seqs;             // --max-seqs N (default 64)
    int kv_blocks;            // --kv-blocks N (INT_MIN: not given)
    double kv_fraction;       // --kv-fraction F (NaN: not given)
    const char *prefix_cache; // --prefix-cache on|off (default on)
    const char *graphs;       // --graphs on|off (default on)
    int tp;                   // --tp N (default 1)
    const char *comm;         // --comm auto|threads|loopback|nccl (default auto)
    double comm_timeout;      // --comm-timeout SECONDS (default 60)
} EngineArgs;

void engine_args_init(EngineArgs *a);
// Writes the ENGINE_ARG_COUNT specs, bound to a's fields, into out; returns the count.
int engine_args_specs(EngineArgs *a, ArgSpec *out);
// Checks the parsed values and sets the matching fields of o (the others are left as
// they are). Returns NULL, or a usage message for args_usage_error.
const char *engine_args_apply(const EngineArgs *a, MxEngineOptions *o);
// Whether the KV pool size was given (--kv-blocks or --kv-fraction).
bool engine_args_pool_given(const EngineArgs *a);

#endif
