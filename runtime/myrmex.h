// myrmex: the API for a program that embeds the runtime. One engine runs one model on one
// backend and serves many requests at once (continuous batching over a paged KV cache with
// prefix caching and preemption; see scheduler.h for the policy).
//
//   MxEngineOptions o = mx_engine_options_default();
//   o.device = "cuda";
//   MxEngine *e;
//   if (mx_engine_create("models/llama-2-13b", &o, &e) != MX_OK)
//       fprintf(stderr, "%s\n", mx_last_error());
//   MxRequestParams p = mx_request_params_default();
//   p.max_tokens = 64;
//   int64_t id;
//   mx_engine_add(e, prompt_ids, n_prompt, &p, &id);   // as many as you like
//   while (mx_engine_has_work(e)) mx_engine_step(e);    // p.on_token streams, if set
//   MxOutput out;
//   mx_engine_output(e, id, &out);                      // out.tokens, out.text, out.finish
//   mx_engine_release(e, id);
//   mx_engine_destroy(e);
//
// Every function returns MX_OK or a named MxStatus with a detail in mx_last_error().
// An engine is not thread-safe: one thread drives it, and the callbacks run on that thread
// inside mx_engine_step (or mx_engine_abort). A callback may call mx_engine_abort (which
// then takes effect at the end of that step), mx_engine_add and the read-only functions;
// mx_engine_step and mx_engine_release refuse with MX_ERR_ARG, and mx_engine_destroy must
// not be called from one.
#ifndef MYRMEX_H
#define MYRMEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct MxEngine MxEngine;

typedef struct MxEngineOptions {
    const char *device;     // "auto" (default: CUDA when present), "cpu", "cuda", "cuda:N"
    const char *gemm;       // CUDA GEMM kernels: NULL/"auto", "cublas", "skinny", "mma", "wgmma"
    int block_size;         // tokens per KV block (default 16)
    int kv_blocks;          // KV pool size in blocks (default 0: sized by kv_fraction); the
                            // pool's null block (padding target) comes on top
    double kv_fraction;     // with kv_blocks 0: this fraction of the backend memory left after
                            // weights and workspace (default 0.9)
    int max_batched_tokens; // tokens computed per step, prefill chunks included (default 512)
    int max_seqs;           // requests running at once (default 64)
    bool prefix_cache;      // reuse the K/V of full blocks shared by prompts (default true)
    bool graphs;            // replay decode steps from CUDA graphs where the backend and comm
                            // allow (default true; false launches every op, e.g. to profile)
    bool tokenizer;         // load DIR/tokenizer.json when present: output text, stop strings
                            // and its eos ids (default true)
    int prompt_logprob_rows; // logits rows per step for prompt logprobs (default 128: longer
                            // prompts are scored over several steps; 0: such requests are
                            // refused). Costs rows x vocab floats of device and host memory.
    const char *dummy;      // with dir NULL: a model preset name (model_presets.h) or a
                            // config.json path (file or directory) whose shapes get random
                            // weights made on the device; nothing else is read (default NULL)
    void (*load_progress)(int layers_done, int layers_total); // weight loading (dummy too), or NULL
    int tp;                 // tensor-parallel ranks the model is split over (default 1)
    const char *comm;       // how the ranks talk: "auto" (default: threads on the CPU; nccl
                            // when each rank can have its own GPU, else loopback on one;
                            // under mpirun nccl on GPUs, mpi on the CPU), "threads",
                            // "loopback", "nccl", "mpi"
    double comm_timeout_s;  // longest wait for another rank; then the step fails with
                            // MX_ERR_COMM, every request with MX_FINISH_ERROR (default 60)
} MxEngineOptions;

MxEngineOptions mx_engine_options_default(void);

// Why a request ended.
typedef enum MxFinish {
    MX_FINISH_NONE,   // still running or waiting
    MX_FINISH_LENGTH, // max_tokens generated
    MX_FINISH_STOP,   // an eos id, a stop id or a stop string
    MX_FINISH_ABORT,  // mx_engine_abort
    MX_FINISH_ERROR,  // its output could not be produced (out of memory); see mx_engine_output
} MxFinish;

// "length", "stop", "abort", "error" ("" for MX_FINISH_NONE).
const char *mx_finish_name(MxFinish f);

// One event of the per-token callback: a token was generated, or the request ended.
typedef struct MxTokenEvent {
    int64_t request;
    int32_t token;              // the generated id; -1 on an abort's final event
    int index;                  // its position in the output (0 = first generated)
    const char *text;           // text that became final with it ("" when none; NULL without a
    size_t text_len;            // tokenizer); never part of a stop string
    const int32_t *top_ids;     // [n_top] most likely ids at this step, best first
    const float *top_logprobs;  // [n_top] their natural-log probabilities
    int n_top;
    float logprob;              // the token's natural-log probability (NaN unless the request
                                // asked for logprobs or top_logprobs)
    MxFinish finish;            // != MX_FINISH_NONE on the request's last event (exactly one)
} MxTokenEvent;

typedef void (*MxTokenCallback)(void *user, const MxTokenEvent *event);

#define MX_MAX_STOP_IDS 64
#define MX_MAX_TOP_LOGPROBS 64

typedef struct MxRequestParams {
    int max_tokens;          // >= 1 (default 16); prompt + max_tokens <= the model's context
    float temperature;       // 0 = greedy (default); > 0 samples
    int top_k;               // 0 = whole vocabulary (default)
    float top_p;             // (0, 1] (default 1)
    uint64_t seed;           // token i is drawn from (seed, i) alone, so a request's tokens do
                             // not depend on what it was batched with, or on preemption
    int top_logprobs;        // report the K most likely ids per token (0..MX_MAX_TOP_LOGPROBS)
    bool logprobs;           // report each generated token's logprob (implied by top_logprobs)
    bool prompt_logprobs;    // score the prompt: the logprob of each prompt token given the
                             // ones before it, and its top_logprobs most likely ids; the
                             // prompt is then computed, never taken from the prefix cache
    bool ignore_eos;         // do not stop at the model's eos ids (config.json, and the
                             // tokenizer's: tokenizer_config.json, generation_config.json)
    const int32_t *stop_ids; // [n_stop_ids] more ids that end the request (kept in its tokens,
    int n_stop_ids;          // left out of its text); at most MX_MAX_STOP_IDS
    const char *const *stop; // [n_stop] stop strings: the text ends right before the first
    int n_stop;              // match (needs the tokenizer); at most 16, each 1..256 bytes
    MxTokenCallback on_token; // optional, called for every token and the final event
    void *user;              // passed to on_token
} MxRequestParams;

MxRequestParams mx_request_params_default(void);

// Loads the model in DIR (config.json, safetensors, and tokenizer.json when present) onto
// the device and sizes the KV pool. Errors: MX_ERR_ARG (bad options), MX_ERR_DEVICE, and
// every model or tokenizer load error. On error *out is NULL. With dir NULL and opt->dummy
// set, the model is that shape with random weights and no tokenizer.
//
// Under mpirun (one tensor-parallel rank per process, opt->tp = the number of processes),
// every process calls this with the same arguments. On process 0 it returns the engine; on
// the others it loads their rank, mirrors process 0's steps until process 0 destroys its
// engine, and then returns MX_FOLLOWER_DONE (exit 0) or the error that ended the run.
MxStatus mx_engine_create(const char *dir, const MxEngineOptions *opt, MxEngine **out);
// Frees everything, requests still queued included. NULL is fine.
void mx_engine_destroy(MxEngine *e);

// Queues a request for prompt[0..n_prompt) (copied) and returns its id (ids start at 1 and
// only grow). It is checked here, never later: MX_ERR_ARG (empty prompt, bad params),
// MX_ERR_TOKEN (an id outside the vocabulary), MX_ERR_CONTEXT (prompt + max_tokens over the
// model's context), MX_ERR_KV_TOO_SMALL (it could not fit the whole KV pool even alone),
// MX_ERR_COMM (the model's tensor-parallel ranks failed earlier; see mx_engine_step).
MxStatus mx_engine_add(MxEngine *e, const int32_t *prompt, int n_prompt, const MxRequestParams *p, int64_t *id);

// Runs one step: schedules, runs the model once over every scheduled chunk, samples, checks
// stop conditions and fires callbacks. A step with nothing queued returns MX_OK at once.
// Errors are the model's (MX_ERR_OPS ...): the step's chunks are then not counted as
// computed and a later step may retry them; and MX_ERR_KV_FULL if requests are queued but
// none could be scheduled (never expected: a guard against a step loop spinning forever).
// MX_ERR_COMM: a tensor-parallel rank failed, stalled past comm_timeout_s or died; every
// request has then ended with MX_FINISH_ERROR (final events sent) and the engine refuses
// new work: the only way on is mx_engine_destroy.
MxStatus mx_engine_step(MxEngine *e);
// Whether any request is waiting or running.
bool mx_engine_has_work(const MxEngine *e);

// Ends a request that is waiting or running: its blocks are freed now (at the end of the
// current step when called from a callback), its output so far kept, finish
// MX_FINISH_ABORT, and its callback gets a final event. A finished request is left as is.
// MX_ERR_ARG for an unknown (or released) id.
MxStatus mx_engine_abort(MxEngine *e, int64_t id);

// A request's output so far. The pointers stay valid until the next mx_engine_step,
// mx_engine_release or mx_engine_destroy. MX_ERR_ARG for an unknown id.
typedef struct MxOutput {
    const int32_t *tokens;      // [n_tokens] generated ids (a final eos or stop id included)
    int n_tokens;
    const char *text;           // their text, NUL-terminated (NULL without a tokenizer); special
    size_t text_len;            // tokens skipped; ends before a stop string
    const int32_t *top_ids;     // [n_tokens, n_top]
    const float *top_logprobs;  // [n_tokens, n_top]
    int n_top;
    const float *token_logprobs; // [n_tokens] each generated token's logprob (NULL unless asked)
    const float *prompt_logprobs; // [n_prompt] logprob of prompt token i given tokens [0, i);
                                 // entry 0 is NaN (NULL unless prompt_logprobs was asked)
    const int32_t *prompt_top_ids; // [n_prompt, n_top] the most likely ids at each prompt
    const float *prompt_top_logprobs; // position (row 0 unused), as top_ids
    int n_prompt_scored;         // leading prompt entries filled so far (n_prompt when done)
    MxFinish finish;
    int n_prompt;
    int n_cached_prompt;        // prompt tokens found in the prefix cache at first admission
    int n_preemptions;          // times it was preempted and recomputed
    double first_token_seconds; // from mx_engine_add to its first token (0 before it)
    double total_seconds;       // from mx_engine_add to its end (so far, while unfinished)
} MxOutput;

MxStatus mx_engine_output(const MxEngine *e, int64_t id, MxOutput *out);
// Forgets a request (aborting it first if it is still queued). Finished requests are kept
// until released, so their output can be read; release every id you add.
MxStatus mx_engine_release(MxEngine *e, int64_t id);

typedef struct MxEngineStats {
    int running, waiting, finished;      // requests by state (finished: not yet released)
    long steps, preemptions;
    int blocks_total, blocks_free, blocks_live, blocks_cached; // free + live + cached == total
    long tokens_computed;                // tokens run through the model (recompute included)
    long tokens_cached;                  // tokens found in the prefix cache, not recomputed
    long tokens_queried;                 // tokens of requests admitted (again, after preemption)
    double prefix_hit_rate;              // tokens_cached / tokens_queried (0 when none)
    long tokens_generated;
    long prefix_evictions;               // cached blocks reused for other content
} MxEngineStats;

void mx_engine_stats(const MxEngine *e, MxEngineStats *s);

typedef struct MxEngineInfo {
    const char *device;      // "cuda:0 NVIDIA H200 (...)" or "cpu (16 threads)"
    const char *memory_plan; // "weights ..., workspace ..., KV ... = N blocks x 16 = T tokens"
    int vocab_size, max_context;
    int block_size, kv_blocks; // usable blocks (the pool's null block not counted)
    int max_batched_tokens, max_seqs;
    int prompt_logprob_rows; // MxEngineOptions.prompt_logprob_rows (0: prompts cannot be scored)
    bool prefix_cache, has_tokenizer;
    uint64_t weight_bytes, workspace_bytes, kv_bytes; // what the engine allocated (memory plan)
    int device_index;        // CUDA device index, -1 on the CPU backend
} MxEngineInfo;

// Strings are owned by the engine.
void mx_engine_info(const MxEngine *e, MxEngineInfo *info);

// The CUDA devices this process's tensor-parallel ranks run on, each once, in rank order
// (comm "nccl": device, device + 1, ...; "loopback": one device for every rank): up to cap
// of them into devices[], and their number is returned (more than cap: some left out).
// 0 on the CPU backend. For figures that span the ranks' GPUs, such as energy.
int mx_engine_devices(const MxEngine *e, int *devices, int cap);

// Memory of the engine's devices now, summed over the GPUs this process's ranks use (see
// mx_engine_devices): in use (total - free, other processes included) and total, in bytes;
// on the CPU backend, the host's. MX_ERR_DEVICE when it cannot be read.
MxStatus mx_engine_device_memory(const MxEngine *e, size_t *used_bytes, size_t *total_bytes);

#endif
