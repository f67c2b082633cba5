// Block pool and block tables: the null block, all-or-nothing allocation, reference counts,
// LRU free order, and free + live == total after every operation of a random workload.
// (The prefix cache is tested in test_block_pool.c.)
#include <string.h>

#include "alloc.h"
#include "batch.h"
#include "kv_cache.h"
#include "test_util.h"

static void test_pool_basics(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 0), MX_ERR_ARG);
    CHECK_STATUS(block_pool_init(&p, 1), MX_ERR_ARG); // only the null block
    CHECK_STATUS(block_pool_init(&p, 9), MX_OK);      // the null block + 8
    CHECK(block_pool_total(&p) == 8 && block_pool_free_count(&p) == 8);
    int32_t ids[8];
    CHECK_STATUS(block_pool_alloc(&p, 3, ids), MX_OK);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3); // never the null block
    CHECK(block_pool_free_count(&p) == 5 && block_pool_live_count(&p) == 3);
    // All or nothing: asking for more than is free changes nothing.
    int32_t more[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    CHECK_STATUS(block_pool_alloc(&p, 6, more), MX_ERR_KV_FULL);
    CHECK(block_pool_free_count(&p) == 5 && more[0] == -7);
    // Sharing: a block returns to the free list only at reference count 0.
    block_pool_incref(&p, ids[1]);
    block_pool_decref(&p, ids[1]);
    CHECK(block_pool_free_count(&p) == 5);
    block_pool_decref(&p, ids[1]);
    CHECK(block_pool_free_count(&p) == 6);
    block_pool_check(&p);
    // LRU: freed blocks go to the tail, so the next allocation takes never-used blocks first.
    int32_t next[6];
    CHECK_STATUS(block_pool_alloc(&p, 6, next), MX_OK);
    CHECK(next[0] == 4 && next[4] == 8 && next[5] == 2);
    CHECK(block_pool_free_count(&p) == 0);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

static uint64_t rng = 0x1234567;
static int rnd(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

static void test_tables_random(void) {
    enum { SEQS = 7, BLOCKS = 40, BS = 4 };
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, BLOCKS + 1), MX_OK);
    BlockTable t[SEQS];
    int len[SEQS] = {0};
    memset(t, 0, sizeof t);
    int full = 0;
    for (int step = 0; step < 3000; step++) {
        int s = rnd(SEQS);
        if (rnd(10) == 0) {
            block_table_release(&t[s], &p);
            len[s] = 0;
        } else {
            int want = len[s] + 1 + rnd(9);
            int free_before = block_pool_free_count(&p), blocks_before = t[s].n_blocks;
            MxStatus st = block_table_reserve(&t[s], &p, BS, want);
            if (st == MX_OK) {
                len[s] = want;
                CHECK(t[s].n_blocks == blocks_for_tokens(want, BS));
            } else {
                full++;
                CHECK(st == MX_ERR_KV_FULL);
                CHECK(block_pool_free_count(&p) == free_before && t[s].n_blocks == blocks_before);
            }
        }
        int live = 0;
        for (int i = 0; i < SEQS; i++) live += t[i].n_blocks;
        CHECK(live == block_pool_live_count(&p));
        block_pool_check(&p);
    }
    CHECK(full > 0); // the workload did hit a full pool
    for (int i = 0; i < SEQS; i++) block_table_release(&t[i], &p);
    CHECK(block_pool_free_count(&p) == BLOCKS);
    block_pool_destroy(&p);
}

static void test_table_nomem(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 65), MX_OK);
    BlockTable t = {0};
    mx_alloc_fail_after(0);
    CHECK_STATUS(block_table_reserve(&t, &p, 16, 100), MX_ERR_NOMEM);
    mx_alloc_fail_after(-1);
    CHECK(block_pool_free_count(&p) == 64 && t.n_blocks == 0);
    CHECK_STATUS(block_table_reserve(&t, &p, 16, 100), MX_OK);
    CHECK(t.n_blocks == 7);
    block_table_release(&t, &p);
    block_pool_destroy(&p);
}

static void test_batch(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 17), MX_OK);
    BlockTable a = {0}, b = {0};
    CHECK_STATUS(block_table_reserve(&b, &p, 4, 3), MX_OK); // b: block 1
    CHECK_STATUS(block_table_reserve(&a, &p, 4, 6), MX_OK); // a: blocks 2, 3
    Batch batch;
    CHECK_STATUS(batch_init(&batch, 8, 2, 8, 8), MX_OK);
    int32_t prompt[6] = {10, 11, 12, 13, 14, 15};
    // a: prefill of 6 tokens with every row's logits; b: a decode of its 3rd token.
    CHECK_STATUS(batch_add(&batch, prompt, 6, 0, &a, 4, BATCH_LOGITS_ALL), MX_OK);
    CHECK_STATUS(batch_add(&batch, prompt, 1, 2, &b, 4, BATCH_LOGITS_LAST), MX_OK);
    CHECK(batch.n_tokens == 7 && batch.n_seqs == 2 && batch.n_rows == 7 && batch.n_kv_indices == 3);
    CHECK(batch.q_start[0] == 0 && batch.q_start[1] == 6 && batch.q_start[2] == 7);
    CHECK(batch.ctx_len[0] == 6 && batch.ctx_len[1] == 3);
    CHECK(batch.positions[5] == 5 && batch.positions[6] == 2);
    CHECK(batch.slot_mapping[0] == 8 && batch.slot_mapping[4] == 12 && batch.slot_mapping[6] == 6);
    CHECK(batch.kv_indices[0] == 2 && batch.kv_indices[1] == 3 && batch.kv_indices[2] == 1);
    CHECK(batch.last_page_len[0] == 2 && batch.last_page_len[1] == 3);
    CHECK(batch.logits_rows[6] == 6);
    // Over capacity, or a table too short for the context: rejected, batch unchanged.
    CHECK_STATUS(batch_add(&batch, prompt, 2, 0, &a, 4, BATCH_LOGITS_LAST), MX_ERR_ARG);
    batch_clear(&batch);
    CHECK_STATUS(batch_add(&batch, prompt, 2, 3, &b, 4, BATCH_LOGITS_LAST), MX_ERR_ARG);
    CHECK(batch.n_tokens == 0 && batch.n_seqs == 0);
    batch_destroy(&batch);
    block_table_release(&a, &p);
    block_table_release(&b, &p);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

int main(void) {
    RUN(test_pool_basics);
    RUN(test_tables_random);
    RUN(test_table_nomem);
    RUN(test_batch);
    return test_exit();
}
