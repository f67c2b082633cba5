// Building the flattened per-step batch (see batch.h).
#include "batch.h"

#include <string.h>

#include "alloc.h"

MxStatus batch_init(Batch *b, int max_tokens, int max_seqs, int max_kv_indices, int max_rows) {
    memset(b, 0, sizeof *b);
    if (max_tokens <= 0 || max_seqs <= 0 || max_kv_indices <= 0 || max_rows <= 0)
        return mx_fail(MX_ERR_ARG, "batch capacities must be positive");
    b->max_tokens = max_tokens;
    b->max_seqs = max_seqs;
    b->max_kv_indices = max_kv_indices;
    b->max_rows = max_rows;
    size_t t = (size_t)max_tokens, s = (size_t)max_seqs;
    b->tokens = mx_malloc(t * sizeof(int32_t));
    b->positions = mx_malloc(t * sizeof(int32_t));
    b->slot_mapping = mx_malloc(t * sizeof(int64_t));
    b->q_start = mx_malloc((s + 1) * sizeof(int32_t));
    b->ctx_len = mx_malloc(s * sizeof(int32_t));
    b->kv_indptr = mx_malloc((s + 1) * sizeof(int32_t));
    b->kv_indices = mx_malloc((size_t)max_kv_indices * sizeof(int32_t));
    b->last_page_len = mx_malloc(s * sizeof(int32_t));
    b->logits_rows = mx_malloc((size_t)max_rows * sizeof(int32_t));
    if (!b->tokens || !b->positions || !b->slot_mapping || !b->q_start || !b->ctx_len || !b->kv_indptr ||
        !b->kv_indices || !b->last_page_len || !b->logits_rows) {
        batch_destroy(b);
        return mx_fail(MX_ERR_NOMEM, "batch of %d tokens", max_tokens);
    }
    batch_clear(b);
    return MX_OK;
}

void batch_destroy(Batch *b) {
    mx_free(b->tokens);
    mx_free(b->positions);
    mx_free(b->slot_mapping);
    mx_free(b->q_start);
    mx_free(b->ctx_len);
    mx_free(b->kv_indptr);
    mx_free(b->kv_indices);
    mx_free(b->last_page_len);
    mx_free(b->logits_rows);
    memset(b, 0, sizeof *b);
}

void batch_clear(Batch *b) {
    b->n_tokens = b->n_seqs = b->n_kv_indices = b->n_rows = 0;
    b->q_start[0] = 0;
    b->kv_indptr[0] = 0;
}

MxStatus batch_add(Batch *b, const int32_t *new_tokens, int n_new, int start, const BlockTable *table,
                   int block_size, BatchLogits logits) {
    if (n_new <= 0 || start < 0 || block_size <= 0) return mx_fail(MX_ERR_ARG, "empty or negative sequence");
    int ctx = start + n_new;
    int n_blocks = blocks_for_tokens(ctx, block_size);
    int n_rows = logits == BATCH_LOGITS_ALL ? n_new : logits == BATCH_LOGITS_LAST ? 1 : 0;
    if (n_blocks > table->n_blocks) return mx_fail(MX_ERR_ARG, "block table holds %d blocks, need %d", table->n_blocks, n_blocks);
    if (b->n_tokens + n_new > b->max_tokens || b->n_seqs + 1 > b->max_seqs ||
        b->n_kv_indices + n_blocks > b->max_kv_indices || b->n_rows + n_rows > b->max_rows)
        return mx_fail(MX_ERR_ARG, "batch capacity exceeded");

    for (int i = 0; i < n_new; i++) {
        int t = b->n_tokens + i, pos = start + i;
        b->tokens[t] = new_tokens[i];
        b->positions[t] = pos;
        b->slot_mapping[t] = (int64_t)table->ids[pos / block_size] * block_size + pos % block_size;
    }
    for (int r = 0; r < n_rows; r++) b->logits_rows[b->n_rows + r] = b->n_tokens + n_new - n_rows + r;
    memcpy(b->kv_indices + b->n_kv_indices, table->ids, (size_t)n_blocks * sizeof(int32_t));

    int s = b->n_seqs;
    b->ctx_len[s] = ctx;
    b->last_page_len[s] = ctx - (n_blocks - 1) * block_size;
    b->n_tokens += n_new;
    b->n_kv_indices += n_blocks;
    b->n_rows += n_rows;
    b->n_seqs = s + 1;
    b->q_start[s + 1] = b->n_tokens;
    b->kv_indptr[s + 1] = b->n_kv_indices;
    return MX_OK;
}
