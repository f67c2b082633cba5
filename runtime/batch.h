// The per-step batch: several sequences' new tokens flattened into one varlen batch.
//
//   tokens[T], positions[T], slot_mapping[T]     T = tokens this step
//   q_start[S+1], ctx_len[S]                       S = sequences this step
//   kv_indptr[S+1], kv_indices[...], last_page_len[S]   block tables as CSR
//   logits_rows[R]                                 rows of T whose logits are wanted
//
// A prefill chunk and a decode step are the same thing: a sequence with n new tokens at
// positions start .. start + n - 1 whose context (all earlier tokens) is already in its
// blocks. The builder only fills host arrays; the forward copies them to the backend.
#ifndef MYRMEX_BATCH_H
#define MYRMEX_BATCH_H

#include <stdint.h>

#include "kv_cache.h"
#include "status.h"

typedef enum BatchLogits {
    BATCH_LOGITS_NONE, // a prefill chunk that is not the last one
    BATCH_LOGITS_LAST, // the next-token distribution
    BATCH_LOGITS_ALL,  // every new token's row (prompt scoring)
} BatchLogits;

typedef struct Batch {
    int max_tokens, max_seqs, max_kv_indices, max_rows; // capacities
    int n_tokens, n_seqs, n_kv_indices, n_rows;
    int32_t *tokens;        // [T]
    int32_t *positions;     // [T]
    int64_t *slot_mapping;  // [T] block * block_size + offset
    int32_t *q_start;       // [S + 1]
    int32_t *ctx_len;       // [S]
    int32_t *kv_indptr;     // [S + 1]
    int32_t *kv_indices;    // [n_kv_indices]
    int32_t *last_page_len; // [S], in [1, block_size]
    int32_t *logits_rows;   // [R]
} Batch;

MxStatus batch_init(Batch *b, int max_tokens, int max_seqs, int max_kv_indices, int max_rows);
void batch_destroy(Batch *b);
void batch_clear(Batch *b);

// Appends a sequence whose n_new tokens start at position `start`; table must already hold
// start + n_new tokens (block_table_reserve). On MX_ERR_ARG (capacity exceeded, n_new <= 0,
// table too short) the batch is unchanged.
MxStatus batch_add(Batch *b, const int32_t *new_tokens, int n_new, int start, const BlockTable *table,
                   int block_size, BatchLogits logits);

#endif
