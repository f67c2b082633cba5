// myrmex bench: offline latency, throughput and energy of one model through the engine,
// over a sweep of batch size x input length x output length.
//
// Each configuration (b, i, o): `--warmup` unmeasured batches, then `-r` measured ones. A
// batch is b requests of exactly i random token ids (seeded; different for every request,
// repetition and configuration, so the prefix cache finds nothing to reuse; its hits are
// reported to show it) added at once, each generating exactly o tokens (eos ignored). Token
// arrival times come from the engine's per-token callback, which fires when the step that
// made the token returns (the device has finished it then).
//
// Energy: NVML's total-energy counter is read before each batch, after the step in which
// the last request got its first token, and at the end: prefill joules / (b * i) and decode
// joules / decode tokens. The idle power (counter over --idle-seconds before anything runs)
// is reported beside it, not subtracted. With tensor parallelism both are sums over every
// GPU this process's ranks use (mx_engine_devices), and the throttle monitor watches them all.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "alloc.h"
#include "args.h"
#include "backend.h"
#include "bench_common.h"
#include "bench_metrics.h"
#include "commands.h"
#include "engine_args.h"
#include "json_util.h"
#include "myrmex.h"
#include "nvml.h"
#include "profile.h"

#define MAX_CONFIGS 4096

// ---------------------------------------------------------------------------------------
// Flags

typedef struct Flags {
    const char *model_dir, *dummy, *device, *gemm, *profile_steps;
    IntList batch, input_len, output_len;
    int reps, warmup, json, csv;
    int64_t seed;
    double idle_seconds; // NaN: the default (2 s when NVML reads energy, else 0)
    EngineArgs engine;
    bool gpu;            // the device resolved to a GPU
} Flags;

static void flags_free(Flags *f) {
    int_list_free(&f->batch);
    int_list_free(&f->input_len);
    int_list_free(&f->output_len);
}

static int max_of(const IntList *l) {
    int m = 0;
    for (int i = 0; i < l->n; i++)
        if (l->items[i] > m) m = l->items[i];
    return m;
}

static const char *check_list(const IntList *l, const char *name, int hi) {
    static char msg[128];
    for (int i = 0; i < l->n; i++)
        if (l->items[i] < 1 || l->items[i] > hi) {
            snprintf(msg, sizeof msg, "%s: %d is not in [1, %d]", name, l->items[i], hi);
            return msg;
        }
    return NULL;
}

// Fills a list that was not given with defaults (items copied).
static int list_default(IntList *l, const int *items, int n) {
    if (l->n) return 0;
    l->items = malloc((size_t)n * sizeof *l->items);
    if (!l->items) return -1;
    memcpy(l->items, items, (size_t)n * sizeof *items);
    l->n = n;
    return 0;
}

// Whether "auto"/"cuda..." resolves to a GPU on this machine (for the defaults).
static bool device_is_gpu(const char *device) {
    if (strcmp(device, "cpu") == 0) return false;
    Backend b;
    if (backend_open(device, &b) != MX_OK) return strncmp(device, "cuda", 4) == 0; // the engine reports it
    return b.device >= 0;
}

static int parse_flags(int argc, char **argv, Flags *f, MxEngineOptions *eo) {
    *f = (Flags){.device = "auto", .reps = -1, .warmup = 1, .idle_seconds = NAN};
    engine_args_init(&f->engine);
    ArgSpec specs[40] = {
        {"--model", ARG_STRING, &f->model_dir, "DIR", "Hugging Face model directory (instead of --dummy)"},
        {"--dummy", ARG_STRING, &f->dummy, "NAME|CONFIG",
         "random weights made on the device for a preset (llama-2-7b, llama-2-13b, llama-2-70b, llama-3-8b, "
         "llama-3-70b, small-100m) or a config.json; default llama-2-13b on a GPU, small-100m on the CPU"},
        {"-b", ARG_INT_LIST, &f->batch, "LIST", "batch sizes (default 1,8,64 on a GPU, 1,4 on the CPU)"},
        {"--batch", ARG_INT_LIST, &f->batch, "LIST", "the same as -b"},
        {"-i", ARG_INT_LIST, &f->input_len, "LIST", "input lengths in tokens (default 128,2048 on a GPU, 64 on the CPU)"},
        {"--input-len", ARG_INT_LIST, &f->input_len, "LIST", "the same as -i"},
        {"-o", ARG_INT_LIST, &f->output_len, "LIST", "output lengths in tokens (default 128 on a GPU, 16 on the CPU)"},
        {"--output-len", ARG_INT_LIST, &f->output_len, "LIST", "the same as -o"},
        {"-r", ARG_INT, &f->reps, "N", "measured repetitions per configuration (default 3 on a GPU, 2 on the CPU)"},
        {"--reps", ARG_INT, &f->reps, "N", "the same as -r"},
        {"--warmup", ARG_INT, &f->warmup, "N", "unmeasured batches before each configuration (default 1)"},
        {"--seed", ARG_INT64, &f->seed, "S", "seed of the random prompts (default 0)"},
        {"--idle-seconds", ARG_DOUBLE, &f->idle_seconds, "S",
         "measure the idle power over S seconds first (default 2 when NVML reads energy; 0 skips)"},
        {"--profile-steps", ARG_STRING, &f->profile_steps, "A:B",
         "bracket engine steps A..B with cudaProfilerStart/Stop (for nsys --capture-range=cudaProfilerApi)"},
        {"--device", ARG_STRING, &f->device, "DEV", "auto, cpu, cuda or cuda:N (default auto: cuda when a GPU is present)"},
        {"--gemm", ARG_STRING, &f->gemm, "IMPL", "CUDA GEMM kernels: auto, cublas, skinny, mma or wgmma (default auto)"},
        {"--json", ARG_FLAG, &f->json, NULL, "print one JSON object (manifest, settings, one result per configuration)"},
        {"--csv", ARG_FLAG, &f->csv, NULL, "print CSV, one row per configuration"},
    };
    int n_specs = 18;
    n_specs += engine_args_specs(&f->engine, specs + n_specs);
    int rc = args_parse("bench", "myrmex bench [--model DIR | --dummy NAME] [-b 1,8,64] [-i 128,2048] [-o 128] [-r 3] [options]",
                        specs, n_specs, argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) return rc;
    long first = 0, last = 0;
    const char *usage = f->model_dir && f->dummy ? "give --model or --dummy, not both"
                        : f->json && f->csv      ? "give --json or --csv, not both"
                        : f->reps == 0 || f->reps < -1 ? "-r must be >= 1"
                        : f->warmup < 0          ? "--warmup must be >= 0"
                        : !isnan(f->idle_seconds) && !(f->idle_seconds >= 0 && f->idle_seconds <= 600)
                            ? "--idle-seconds must be in [0, 600]"
                            : engine_args_apply(&f->engine, eo);
    if (!usage && f->profile_steps && profile_steps_parse(f->profile_steps, &first, &last) != MX_OK) usage = mx_last_error();
    if (!usage) usage = check_list(&f->batch, "-b", 1 << 16);
    if (!usage) usage = check_list(&f->input_len, "-i", 1 << 24);
    if (!usage) usage = check_list(&f->output_len, "-o", 1 << 24);
    if (!usage && (long)(f->batch.n ? f->batch.n : 3) * (f->input_len.n ? f->input_len.n : 2) *
                          (f->output_len.n ? f->output_len.n : 1) > MAX_CONFIGS)
        usage = "the sweep has more than 4096 configurations";
    if (usage) return args_usage_error("bench", "%s", usage);
    if (f->profile_steps && profile_capture_set(first, last) != MX_OK) return args_usage_error("bench", "%s", mx_last_error());

    // Defaults that depend on the device: a GPU sweep, or one a 2-core CPU runs in seconds.
    f->gpu = device_is_gpu(f->device);
    static const int gpu_b[] = {1, 8, 64}, gpu_i[] = {128, 2048}, gpu_o[] = {128};
    static const int cpu_b[] = {1, 4}, cpu_i[] = {64}, cpu_o[] = {16};
    if (list_default(&f->batch, f->gpu ? gpu_b : cpu_b, f->gpu ? 3 : 2) ||
        list_default(&f->input_len, f->gpu ? gpu_i : cpu_i, f->gpu ? 2 : 1) ||
        list_default(&f->output_len, f->gpu ? gpu_o : cpu_o, 1)) {
        fprintf(stderr, "myrmex bench: error: out of memory\n");
        return ARGS_ERROR;
    }
    if (f->reps < 0) f->reps = f->gpu ? 3 : 2;
    if (!f->model_dir && !f->dummy) f->dummy = f->gpu ? "llama-2-13b" : "small-100m";

    // The engine sized for the sweep: every batch runs at once, prompts prefill in one step
    // up to 8192 tokens, and the KV pool holds the largest batch at full length (unless given).
    int max_b = max_of(&f->batch), max_i = max_of(&f->input_len), max_o = max_of(&f->output_len);
    if (!flag_given(argc, argv, "--max-seqs") && eo->max_seqs < max_b) eo->max_seqs = max_b;
    if (!flag_given(argc, argv, "--max-batched-tokens"))
        eo->max_batched_tokens = max_i < 512 ? 512 : max_i > 8192 ? 8192 : max_i;
    if (!engine_args_pool_given(&f->engine)) {
        // + 1 per sequence: the scheduler admits a request only while every running one
        // keeps a block of headroom, so an exact fit would run the batch in waves.
        long per = ((long)max_i + max_o + eo->block_size - 1) / eo->block_size + 1;
        long blocks = per * max_b;
        eo->kv_blocks = blocks > (1 << 24) ? 1 << 24 : (int)blocks;
    }
    eo->device = f->device;
    eo->gemm = f->gemm;
    eo->tokenizer = false;          // token ids only: no text is made
    eo->prompt_logprob_rows = 0;    // never asked for: no extra logits rows
    eo->dummy = f->model_dir ? NULL : f->dummy;
    return ARGS_OK;
}

// ---------------------------------------------------------------------------------------
// One batch

// Arrival times of one request's tokens, filled by the engine's callback.
typedef struct Recorder {
    double *times;   // [capacity]
    int n, capacity;
    int *n_first;    // shared: requests of the batch that have their first token
} Recorder;

static void on_token(void *user, const MxTokenEvent *ev) {
    Recorder *r = user;
    if (ev->token < 0 || r->n >= r->capacity) return; // an abort's final event
    r->times[r->n++] = bench_now();
    if (ev->index == 0) (*r->n_first)++;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct Config {
    int batch, input_len, output_len;
} Config;

// Everything measured for one configuration over its repetitions.
typedef struct ConfigResult {
    Config c;
    RequestTimeline *reqs;   // [reps * batch]
    double *times;           // [reps * batch * output_len]
    double duration;         // seconds, summed over repetitions
    double prefill_s, decode_s;
    long prefill_tokens, decode_tokens;
    bool energy_ok;
    double prefill_j, decode_j;
    size_t peak_bytes;
    NvmlWindow window;
    bool have_window;
    long first_step, last_step, cached_tokens;
    RunMetrics m;
} ConfigResult;

typedef struct Bench {
    MxEngine *e;
    MxEngineInfo info;
    Nvml *nvml;        // every GPU in gpus, or NULL
    int gpus[NVML_MAX_GPUS]; // CUDA devices of the engine's ranks
    int n_gpus;
    int vocab;
    int32_t *prompt;   // [max input]
    int64_t *ids;      // [max batch]
    Recorder *rec;     // [max batch]
    double *scratch;   // [max batch * max output] warm-up times
    uint64_t seed;
    Progress progress;
} Bench;

static bool read_energy(Bench *b, double *j) { return b->nvml && nvml_energy_joules(b->nvml, j); }

// Runs one batch of config c. With out (a measured repetition): token times into times
// [batch * output_len], timelines into reqs[batch], phases and energy added to out.
static MxStatus run_batch(Bench *b, const Config *c, uint64_t stream, double *times, RequestTimeline *reqs,
                          ConfigResult *out) {
    int n_first = 0;
    MxRequestParams p = mx_request_params_default();
    p.max_tokens = c->output_len;
    p.ignore_eos = true;
    p.on_token = on_token;
    for (int k = 0; k < c->batch; k++)
        b->rec[k] = (Recorder){.times = times + (size_t)k * c->output_len, .capacity = c->output_len, .n_first = &n_first};
    double e0 = 0, e1 = 0, e2 = 0;
    bool energy = out && read_energy(b, &e0);
    double t0 = bench_now();
    MxStatus st = MX_OK;
    int added = 0;
    for (int k = 0; k < c->batch && !st; k++) {
        uint64_t s = b->seed ^ (stream * 0x100000001B3ull + (uint64_t)k * 0x9E3779B97F4A7C15ull);
        for (int t = 0; t < c->input_len; t++) b->prompt[t] = (int32_t)(splitmix64(&s) % (uint64_t)b->vocab);
        p.user = &b->rec[k];
        if (!(st = mx_engine_add(b->e, b->prompt, c->input_len, &p, &b->ids[k]))) added++;
    }
    bool prefilled = false;
    while (!st && mx_engine_has_work(b->e)) {
        st = mx_engine_step(b->e);
        if (!prefilled && n_first == c->batch) {
            prefilled = true;
            energy = energy && read_energy(b, &e1);
        }
    }
    energy = energy && prefilled && read_energy(b, &e2);
    for (int k = 0; k < added && !st; k++) {
        MxOutput o;
        if ((st = mx_engine_output(b->e, b->ids[k], &o))) break;
        if (o.finish != MX_FINISH_LENGTH || b->rec[k].n != c->output_len)
            st = mx_fail(MX_ERR_OPS, "request %d of the batch ended with %d of %d tokens (%s)", k, b->rec[k].n,
                         c->output_len, mx_finish_name(o.finish));
        if (out) out->cached_tokens += o.n_cached_prompt;
    }
    for (int k = 0; k < added; k++) mx_engine_release(b->e, b->ids[k]);
    if (st || !out) return st;
    for (int k = 0; k < c->batch; k++)
        reqs[k] = (RequestTimeline){.start = t0, .token_times = b->rec[k].times, .n_events = b->rec[k].n,
                                    .output_tokens = b->rec[k].n, .input_tokens = c->input_len};
    BatchPhases ph;
    if ((st = batch_phases(reqs, c->batch, &ph))) return st;
    out->duration += ph.end - ph.start;
    out->prefill_s += ph.prefill_end - ph.start;
    out->decode_s += ph.end - ph.prefill_end;
    out->prefill_tokens += ph.prefill_tokens;
    out->decode_tokens += ph.decode_tokens;
    if (energy) {
        out->prefill_j += e1 - e0;
        out->decode_j += e2 - e1;
    } else {
        out->energy_ok = false;
    }
    return MX_OK;
}

// Device memory in use now (GPU), or the process's peak resident set (CPU).
static size_t memory_now(const Bench *b) {
    if (b->info.device_index >= 0) {
        size_t used = 0, total = 0;
        return mx_engine_device_memory(b->e, &used, &total) == MX_OK ? used : 0;
    }
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (size_t)ru.ru_maxrss * 1024 : 0; // ru_maxrss: KiB on Linux
}

static MxStatus run_config(Bench *b, const Config *c, int index, int n_configs, const Flags *f, ConfigResult *out) {
    *out = (ConfigResult){.c = *c, .energy_ok = b->nvml != NULL};
    size_t n_req = (size_t)f->reps * c->batch;
    out->reqs = mx_calloc(n_req, sizeof *out->reqs);
    out->times = mx_malloc(n_req * (size_t)c->output_len * sizeof *out->times);
    if (!out->reqs || !out->times) return mx_fail(MX_ERR_NOMEM, "timings of %zu requests", n_req);
    char label[96];
    snprintf(label, sizeof label, "config %d/%d: b=%d i=%d o=%d", index + 1, n_configs, c->batch, c->input_len,
             c->output_len);
    uint64_t stream = (uint64_t)index * 1000003u;
    MxStatus st = MX_OK;
    for (int w = 0; w < f->warmup && !st; w++) {
        progress_show(&b->progress, label, 0, f->reps);
        st = run_batch(b, c, stream++, b->scratch, NULL, NULL);
    }
    if (b->nvml) nvml_monitor_take(b->nvml, &out->window); // a fresh window for the measured part
    MxEngineStats s;
    mx_engine_stats(b->e, &s);
    out->first_step = s.steps + 1;
    for (int r = 0; r < f->reps && !st; r++) {
        progress_show(&b->progress, label, r, f->reps);
        st = run_batch(b, c, stream++, out->times + (size_t)r * c->batch * c->output_len, out->reqs + (size_t)r * c->batch,
                       out);
        size_t used = memory_now(b);
        if (used > out->peak_bytes) out->peak_bytes = used;
    }
    progress_clear(&b->progress);
    if (st) return st;
    mx_engine_stats(b->e, &s);
    out->last_step = s.steps;
    if (b->nvml) {
        nvml_monitor_take(b->nvml, &out->window);
        out->have_window = out->window.samples > 0;
    }
    return run_metrics_compute(out->reqs, (int)n_req, out->duration, NULL, &out->m);
}

static void config_free(ConfigResult *r) {
    mx_free(r->reqs);
    mx_free(r->times);
}

// ---------------------------------------------------------------------------------------
// Output

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

static cJSON *energy_json(const ConfigResult *r, int n_gpus, const char *why) {
    cJSON *o = cJSON_CreateObject();
    if (!r->energy_ok) {
        cJSON_AddStringToObject(o, "status", "unavailable");
        cJSON_AddStringToObject(o, "reason", why ? why : "the energy counter could not be read");
        return o;
    }
    cJSON_AddStringToObject(o, "status", "measured");
    cJSON_AddNumberToObject(o, "gpus", n_gpus); // the joules and watts are their sum
    cJSON_AddNumberToObject(o, "prefill_joules", r->prefill_j);
    cJSON_AddNumberToObject(o, "decode_joules", r->decode_j);
    cJSON_AddNumberToObject(o, "joules_per_prefill_token", rate(r->prefill_j, (double)r->prefill_tokens));
    cJSON_AddNumberToObject(o, "joules_per_decode_token", rate(r->decode_j, (double)r->decode_tokens));
    cJSON_AddNumberToObject(o, "prefill_avg_watts", rate(r->prefill_j, r->prefill_s));
    cJSON_AddNumberToObject(o, "decode_avg_watts", rate(r->decode_j, r->decode_s));
    return o;
}

static cJSON *result_json(const ConfigResult *r, int reps, bool gpu_memory, int n_gpus, const char *why) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "batch", r->c.batch);
    cJSON_AddNumberToObject(o, "input_len", r->c.input_len);
    cJSON_AddNumberToObject(o, "output_len", r->c.output_len);
    cJSON_AddNumberToObject(o, "repetitions", reps);
    cJSON_AddNumberToObject(o, "requests", r->m.completed);
    cJSON_AddItemToObject(o, "ttft_ms", summary_json_ms(&r->m.ttft));
    cJSON_AddItemToObject(o, "tpot_ms", summary_json_ms(&r->m.tpot));
    cJSON_AddItemToObject(o, "itl_ms", summary_json_ms(&r->m.itl));
    cJSON_AddItemToObject(o, "e2el_ms", summary_json_ms(&r->m.e2el));
    cJSON_AddNumberToObject(o, "prefill_tokens_per_s", rate((double)r->prefill_tokens, r->prefill_s));
    cJSON_AddNumberToObject(o, "decode_tokens_per_s", rate((double)r->decode_tokens, r->decode_s));
    cJSON_AddNumberToObject(o, "output_tokens_per_s", r->m.output_throughput);
    cJSON_AddNumberToObject(o, "prefill_seconds", r->prefill_s);
    cJSON_AddNumberToObject(o, "decode_seconds", r->decode_s);
    cJSON_AddNumberToObject(o, "prefill_tokens", (double)r->prefill_tokens);
    cJSON_AddNumberToObject(o, "decode_tokens", (double)r->decode_tokens);
    cJSON_AddNumberToObject(o, "peak_memory_bytes", (double)r->peak_bytes);
    cJSON_AddStringToObject(o, "peak_memory_source", gpu_memory ? "device_used" : "process_peak_rss");
    cJSON_AddNumberToObject(o, "prefix_cache_hit_tokens", (double)r->cached_tokens);
    cJSON_AddItemToObject(o, "energy", energy_json(r, n_gpus, why));
    if (r->have_window) {
        char names[256];
        nvml_throttle_names(r->window.throttle_any, names, sizeof names);
        cJSON_AddBoolToObject(o, "throttled", nvml_throttle_is_slowdown(r->window.throttle_any));
        cJSON_AddStringToObject(o, "throttle_reasons", names);
        cJSON_AddNumberToObject(o, "temperature_max_c", r->window.temp_max_c);
        cJSON_AddNumberToObject(o, "sm_clock_min_mhz", r->window.sm_mhz_min);
        cJSON_AddNumberToObject(o, "sm_clock_max_mhz", r->window.sm_mhz_max);
        cJSON_AddNumberToObject(o, "power_max_w", r->window.power_max_w);
        cJSON_AddNumberToObject(o, "monitor_samples", r->window.samples);
    } else {
        cJSON_AddNullToObject(o, "throttled");
        cJSON_AddNullToObject(o, "throttle_reasons");
    }
    cJSON_AddNumberToObject(o, "first_step", (double)r->first_step);
    cJSON_AddNumberToObject(o, "last_step", (double)r->last_step);
    return o;
}

typedef struct RunInfo {
    const Flags *f;
    const MxEngineOptions *eo;
    double load_s;
    bool idle_ok;
    double idle_w, idle_s;
    const char *nvml_why;
    NvmlState start[NVML_MAX_GPUS], end[NVML_MAX_GPUS]; // each GPU's, as Bench.gpus
} RunInfo;

static cJSON *list_json(const IntList *l) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < l->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(l->items[i]));
    return a;
}

// The manifest's GPU: `start` and `end` of all GPUs as one (nvml_state_sum: for one GPU, its
// own state), and `gpus`, each GPU's CUDA index and its own start and end.
static cJSON *gpu_json(const Bench *b, const RunInfo *ri) {
    cJSON *gpu = cJSON_CreateObject();
    cJSON_AddStringToObject(gpu, "status", "available");
    NvmlState sum;
    nvml_state_sum(ri->start, b->n_gpus, &sum);
    cJSON_AddItemToObject(gpu, "start", nvml_state_json(&sum));
    nvml_state_sum(ri->end, b->n_gpus, &sum);
    cJSON_AddItemToObject(gpu, "end", nvml_state_json(&sum));
    cJSON *arr = cJSON_AddArrayToObject(gpu, "gpus");
    for (int i = 0; i < b->n_gpus; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "cuda_index", b->gpus[i]);
        cJSON_AddItemToObject(g, "start", nvml_state_json(&ri->start[i]));
        cJSON_AddItemToObject(g, "end", nvml_state_json(&ri->end[i]));
        cJSON_AddItemToArray(arr, g);
    }
    return gpu;
}

static int print_bench_json(const Bench *b, const RunInfo *ri, const ConfigResult *res, int n) {
    const Flags *f = ri->f;
    cJSON *gpu = b->nvml ? gpu_json(b, ri) : NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "benchmark", "myrmex bench");
    cJSON_AddItemToObject(root, "manifest", bench_manifest(gpu, ri->nvml_why));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "source", f->model_dir ? "directory" : "dummy");
    cJSON_AddStringToObject(model, "name", f->model_dir ? f->model_dir : f->dummy);
    cJSON_AddNumberToObject(model, "vocab_size", b->info.vocab_size);
    cJSON_AddNumberToObject(model, "max_context", b->info.max_context);
    cJSON_AddNumberToObject(model, "weight_bytes", (double)b->info.weight_bytes);
    cJSON_AddNumberToObject(model, "load_seconds", ri->load_s);
    cJSON *eng = cJSON_AddObjectToObject(root, "engine");
    cJSON_AddStringToObject(eng, "device", b->info.device);
    cJSON_AddStringToObject(eng, "memory_plan", b->info.memory_plan);
    cJSON_AddNumberToObject(eng, "workspace_bytes", (double)b->info.workspace_bytes);
    cJSON_AddNumberToObject(eng, "kv_bytes", (double)b->info.kv_bytes);
    cJSON_AddNumberToObject(eng, "block_size", b->info.block_size);
    cJSON_AddNumberToObject(eng, "kv_blocks", b->info.kv_blocks);
    cJSON_AddNumberToObject(eng, "max_batched_tokens", b->info.max_batched_tokens);
    cJSON_AddNumberToObject(eng, "max_seqs", b->info.max_seqs);
    cJSON_AddBoolToObject(eng, "prefix_cache", b->info.prefix_cache);
    cJSON_AddStringToObject(eng, "gemm", ri->eo->gemm ? ri->eo->gemm : "auto");
    cJSON *set = cJSON_AddObjectToObject(root, "settings");
    cJSON_AddItemToObject(set, "batch", list_json(&f->batch));
    cJSON_AddItemToObject(set, "input_len", list_json(&f->input_len));
    cJSON_AddItemToObject(set, "output_len", list_json(&f->output_len));
    cJSON_AddNumberToObject(set, "warmup", f->warmup);
    cJSON_AddNumberToObject(set, "repetitions", f->reps);
    cJSON_AddNumberToObject(set, "seed", (double)f->seed);
    if (f->profile_steps) cJSON_AddStringToObject(set, "profile_steps", f->profile_steps);
    else cJSON_AddNullToObject(set, "profile_steps");
    cJSON *idle = cJSON_AddObjectToObject(root, "idle");
    if (ri->idle_ok) {
        cJSON_AddStringToObject(idle, "status", "measured");
        cJSON_AddNumberToObject(idle, "gpus", b->n_gpus); // watts: their sum
        cJSON_AddNumberToObject(idle, "watts", ri->idle_w);
        cJSON_AddNumberToObject(idle, "seconds", ri->idle_s);
    } else {
        cJSON_AddStringToObject(idle, "status", b->nvml ? "skipped" : "unavailable");
        cJSON_AddStringToObject(idle, "reason", b->nvml ? "--idle-seconds 0 or no energy counter" : ri->nvml_why);
    }
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, result_json(&res[i], f->reps, b->info.device_index >= 0, b->n_gpus, ri->nvml_why));
    return print_json_line(root);
}

static void print_csv(const Bench *b, const ConfigResult *res, int n) {
    printf("batch,input_len,output_len,requests,ttft_ms_mean,ttft_ms_p50,ttft_ms_p90,ttft_ms_p99,tpot_ms_mean,"
           "tpot_ms_p50,tpot_ms_p90,tpot_ms_p99,itl_ms_mean,itl_ms_p50,itl_ms_p90,itl_ms_p99,e2el_ms_mean,e2el_ms_p50,"
           "e2el_ms_p90,e2el_ms_p99,prefill_tokens_per_s,decode_tokens_per_s,peak_memory_bytes,"
           "joules_per_prefill_token,joules_per_decode_token,throttled\n");
    for (int i = 0; i < n; i++) {
        const ConfigResult *r = &res[i];
        const MetricSummary *s[4] = {&r->m.ttft, &r->m.tpot, &r->m.itl, &r->m.e2el};
        printf("%d,%d,%d,%d", r->c.batch, r->c.input_len, r->c.output_len, r->m.completed);
        for (int k = 0; k < 4; k++) printf(",%.4f,%.4f,%.4f,%.4f", s[k]->mean * 1e3, s[k]->p50 * 1e3, s[k]->p90 * 1e3, s[k]->p99 * 1e3);
        printf(",%.2f,%.2f,%zu", rate((double)r->prefill_tokens, r->prefill_s), rate((double)r->decode_tokens, r->decode_s),
               r->peak_bytes);
        if (r->energy_ok)
            printf(",%.6f,%.6f", rate(r->prefill_j, (double)r->prefill_tokens), rate(r->decode_j, (double)r->decode_tokens));
        else
            printf(",unavailable,unavailable");
        printf(",%s\n", !r->have_window ? "unknown" : nvml_throttle_is_slowdown(r->window.throttle_any) ? "yes" : "no");
    }
    (void)b;
}

static void print_table(const Bench *b, const RunInfo *ri, const ConfigResult *res, int n) {
    printf("model: %s (%s); %s\n", ri->f->model_dir ? ri->f->model_dir : ri->f->dummy,
           ri->f->model_dir ? "weights from disk" : "dummy weights", b->info.device);
    printf("memory plan: %s\n", b->info.memory_plan);
    char over[48] = "";
    if (b->n_gpus > 1) snprintf(over, sizeof over, " summed over %d GPUs", b->n_gpus);
    if (b->nvml && ri->idle_ok)
        printf("energy: NVML%s, idle power %.1f W over %.1f s (not subtracted)\n", over, ri->idle_w, ri->idle_s);
    else if (b->nvml) printf("energy: NVML%s (idle power not measured)\n", over);
    else printf("energy: unavailable (%s)\n", ri->nvml_why);
    printf("%d warm-up + %d measured batches per configuration; times in ms (p50/p99)\n\n", ri->f->warmup, ri->f->reps);
    printf("%5s %6s %5s | %17s | %8s | %15s | %17s | %10s %10s | %9s | %9s %9s | %s\n", "batch", "in", "out",
           "TTFT p50/p99", "TPOT p50", "ITL p50/p99", "E2EL p50/p99", "prefill/s", "decode/s", "peak mem", "J/tok pre",
           "J/tok dec", "steps");
    for (int i = 0; i < n; i++) {
        const ConfigResult *r = &res[i];
        char jp[16], jd[16], mem[16], ttft[32], itl[32], e2el[32], steps[40];
        if (r->energy_ok) {
            snprintf(jp, sizeof jp, "%.4f", rate(r->prefill_j, (double)r->prefill_tokens));
            snprintf(jd, sizeof jd, "%.4f", rate(r->decode_j, (double)r->decode_tokens));
        } else {
            snprintf(jp, sizeof jp, "n/a");
            snprintf(jd, sizeof jd, "n/a");
        }
        snprintf(mem, sizeof mem, "%.2f GiB", (double)r->peak_bytes / (1024.0 * 1024.0 * 1024.0));
        snprintf(ttft, sizeof ttft, "%.2f/%.2f", r->m.ttft.p50 * 1e3, r->m.ttft.p99 * 1e3);
        snprintf(itl, sizeof itl, "%.2f/%.2f", r->m.itl.p50 * 1e3, r->m.itl.p99 * 1e3);
        snprintf(e2el, sizeof e2el, "%.1f/%.1f", r->m.e2el.p50 * 1e3, r->m.e2el.p99 * 1e3);
        snprintf(steps, sizeof steps, "%ld-%ld%s", r->first_step, r->last_step,
                 r->have_window && nvml_throttle_is_slowdown(r->window.throttle_any) ? " THROTTLED" : "");
        printf("%5d %6d %5d | %17s | %8.3f | %15s | %17s | %10.1f %10.1f | %9s | %9s %9s | %s\n", r->c.batch,
               r->c.input_len, r->c.output_len, ttft, r->m.tpot.p50 * 1e3, itl, e2el,
               rate((double)r->prefill_tokens, r->prefill_s), rate((double)r->decode_tokens, r->decode_s), mem, jp, jd,
               steps);
    }
    if (!b->nvml) printf("\nenergy unavailable: %s\n", ri->nvml_why);
}

// ---------------------------------------------------------------------------------------

static Progress *load_progress_target;

static void on_load(int done, int total) {
    if (load_progress_target) progress_show(load_progress_target, "loading weights", done, total);
}

// The idle power: the energy counter over s seconds before anything runs.
static void measure_idle(Bench *b, double s, RunInfo *ri) {
    double e0, e1;
    if (!b->nvml || s <= 0 || !nvml_energy_joules(b->nvml, &e0)) return;
    double t0 = bench_now();
    struct timespec d = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&d, NULL);
    double t1 = bench_now();
    if (!nvml_energy_joules(b->nvml, &e1) || t1 <= t0) return;
    ri->idle_ok = true;
    ri->idle_w = (e1 - e0) / (t1 - t0);
    ri->idle_s = t1 - t0;
}

static MxStatus run_sweep(Bench *b, const Flags *f, ConfigResult *res, int *n_done) {
    int n = f->batch.n * f->input_len.n * f->output_len.n, k = 0;
    for (int ib = 0; ib < f->batch.n; ib++)
        for (int ii = 0; ii < f->input_len.n; ii++)
            for (int io = 0; io < f->output_len.n; io++) {
                Config c = {f->batch.items[ib], f->input_len.items[ii], f->output_len.items[io]};
                if ((long)c.input_len + c.output_len > b->info.max_context)
                    return mx_fail(MX_ERR_CONTEXT, "-i %d with -o %d exceeds the model's context of %d", c.input_len,
                                   c.output_len, b->info.max_context);
                MxStatus st = run_config(b, &c, k, n, f, &res[k]);
                k++;
                *n_done = k;
                if (st) return st;
            }
    return MX_OK;
}

int cmd_bench(int argc, char **argv) {
    Flags f;
    MxEngineOptions eo = mx_engine_options_default();
    int rc = parse_flags(argc, argv, &f, &eo);
    if (rc != ARGS_OK) {
        flags_free(&f);
        return rc == ARGS_HELP ? 0 : 2;
    }
    json_init();
    Bench b = {.seed = (uint64_t)f.seed};
    progress_init(&b.progress);
    load_progress_target = &b.progress;
    eo.load_progress = on_load;
    RunInfo ri = {.f = &f, .eo = &eo, .nvml_why = "no GPU in use"};
    double t0 = bench_now();
    MxStatus st = mx_engine_create(f.model_dir, &eo, &b.e);
    if (st == MX_FOLLOWER_DONE) return 0; // mpirun: this process served process 0's steps
    ri.load_s = bench_now() - t0;
    progress_clear(&b.progress);
    int max_b = max_of(&f.batch), max_i = max_of(&f.input_len), max_o = max_of(&f.output_len);
    int n_configs = f.batch.n * f.input_len.n * f.output_len.n, n_done = 0;
    ConfigResult *res = mx_calloc((size_t)n_configs, sizeof *res);
    static char why[256];
    if (!st) {
        mx_engine_info(b.e, &b.info);
        b.vocab = b.info.vocab_size;
        if (!f.json && !f.csv) fprintf(stderr, "myrmex: %s; %s\n", b.info.device, b.info.memory_plan);
        b.prompt = mx_malloc((size_t)max_i * sizeof *b.prompt);
        b.ids = mx_calloc((size_t)max_b, sizeof *b.ids);
        b.rec = mx_calloc((size_t)max_b, sizeof *b.rec);
        b.scratch = mx_malloc((size_t)max_b * (size_t)max_o * sizeof *b.scratch);
        if (!res || !b.prompt || !b.ids || !b.rec || !b.scratch) st = mx_fail(MX_ERR_NOMEM, "bench buffers");
    }
    if (!st) {
        b.n_gpus = mx_engine_devices(b.e, b.gpus, NVML_MAX_GPUS); // more than NVML_MAX_GPUS: nvml_open refuses
        b.nvml = nvml_open(b.gpus, b.n_gpus, why, sizeof why);
        ri.nvml_why = b.nvml ? NULL : why;
        if (b.nvml) {
            for (int g = 0; g < b.n_gpus; g++) nvml_read(b.nvml, g, &ri.start[g]);
            double j;
            bool counter = nvml_energy_joules(b.nvml, &j);
            if (!counter) snprintf(why, sizeof why, "this GPU or driver has no total-energy counter");
            ri.nvml_why = counter ? NULL : why;
            measure_idle(&b, isnan(f.idle_seconds) ? (counter ? 2.0 : 0.0) : f.idle_seconds, &ri);
            nvml_monitor_start(b.nvml, 20); // 20 ms: several samples even in a short decode phase
        }
        st = run_sweep(&b, &f, res, &n_done);
        for (int g = 0; b.nvml && g < b.n_gpus; g++) nvml_read(b.nvml, g, &ri.end[g]);
    }
    if (!st) {
        if (f.json && print_bench_json(&b, &ri, res, n_done)) st = mx_fail(MX_ERR_NOMEM, "JSON output");
        else if (f.csv) print_csv(&b, res, n_done);
        else if (!f.json) print_table(&b, &ri, res, n_done);
    }
    if (!st) st = check_stdout(); // a full disk or a closed pipe is not a success
    if (st) {
        fprintf(stderr, "myrmex bench: error: %s\n", mx_last_error());
        rc = 1;
    }
    for (int i = 0; i < n_configs && res; i++) config_free(&res[i]);
    mx_free(res);
    nvml_close(b.nvml);
    mx_engine_destroy(b.e);
    mx_free(b.prompt);
    mx_free(b.ids);
    mx_free(b.rec);
    mx_free(b.scratch);
    flags_free(&f);
    return rc;
}
