// `myrmex generate --prompts FILE`: a JSONL file of prompts, one JSON object per line:
//
//   {"prompt": "Once upon a time", "max_tokens": 64, "temperature": 0.7, "seed": 3}
//   {"prompt_ids": [1, 415, 2936], "stop": ["\n\n", "###"], "top_logprobs": 2}
//
// Each object has "prompt" (text, encoded with the model's tokenizer) or "prompt_ids"
// (token ids), and optionally max_tokens, temperature, top_k, top_p, seed, top_logprobs,
// ignore_eos, stop (a string or a list of strings) and stop_token_ids; absent fields keep
// the command line's values. Blank lines are skipped; anything else is an error naming the
// line.
#ifndef MYRMEX_PROMPT_FILE_H
#define MYRMEX_PROMPT_FILE_H

#include <stdint.h>

#include "../runtime/myrmex.h"

typedef struct PromptJob {
    int line;             // 1-based line of FILE; 0 for a prompt from the command line
    char *text;           // "prompt", or NULL
    int32_t *ids;         // "prompt_ids", or the encoded text
    int n_ids;
    MxRequestParams p;    // its stop and stop_ids point into the two arrays below
    char **stop;          // [p.n_stop]
    int32_t *stop_ids;    // [p.n_stop_ids]
    int64_t id;           // the engine's request id once added
} PromptJob;

// Reads every line of path. Fields a line leaves out come from *defaults (which must not
// carry stop strings or stop ids). Errors: MX_ERR_IO (cannot read the file), MX_ERR_ARG
// ("FILE:LINE: ..." for a line that is not a valid object, an unknown or repeated field, a
// value of the wrong type or range, or no prompt), MX_ERR_NOMEM; *jobs is then NULL.
MxStatus prompt_file_read(const char *path, const MxRequestParams *defaults, PromptJob **jobs, int *n_jobs);
void prompt_jobs_free(PromptJob *jobs, int n_jobs);

#endif
