// Block pool and block tables (see kv_cache.h).
#include "kv_cache.h"

#include <string.h>

#include "alloc.h"

static void list_remove(BlockPool *p, int32_t id) {
    p->next[p->prev[id]] = p->next[id];
    p->prev[p->next[id]] = p->prev[id];
    p->next[id] = p->prev[id] = -1;
}

static void list_push_tail(BlockPool *p, int32_t id) {
    int32_t s = p->n_blocks, tail = p->prev[s];
    p->next[tail] = id;
    p->prev[id] = tail;
    p->next[id] = s;
    p->prev[s] = id;
}

MxStatus block_pool_init(BlockPool *pool, int n_blocks) {
    memset(pool, 0, sizeof *pool);
    if (n_blocks <= 0) return mx_fail(MX_ERR_ARG, "KV pool needs at least one block, got %d", n_blocks);
    pool->refs = mx_calloc((size_t)n_blocks, sizeof *pool->refs);
    pool->next = mx_calloc((size_t)n_blocks + 1, sizeof *pool->next);
    pool->prev = mx_calloc((size_t)n_blocks + 1, sizeof *pool->prev);
    if (!pool->refs || !pool->next || !pool->prev) {
        block_pool_destroy(pool);
        return mx_fail(MX_ERR_NOMEM, "KV block pool of %d blocks", n_blocks);
    }
    pool->n_blocks = n_blocks;
    pool->next[n_blocks] = pool->prev[n_blocks] = n_blocks; // empty list: sentinel to itself
    for (int32_t i = 0; i < n_blocks; i++) list_push_tail(pool, i);
    pool->n_free = n_blocks;
    return MX_OK;
}

void block_pool_destroy(BlockPool *pool) {
    mx_free(pool->refs);
    mx_free(pool->next);
    mx_free(pool->prev);
    memset(pool, 0, sizeof *pool);
}

MxStatus block_pool_alloc(BlockPool *pool, int n, int32_t *ids) {
    if (n < 0) return mx_fail(MX_ERR_ARG, "negative block count");
    if (n > pool->n_free) return mx_fail(MX_ERR_KV_FULL, "need %d blocks, %d free", n, pool->n_free);
    for (int i = 0; i < n; i++) {
        int32_t id = pool->next[pool->n_blocks];
        list_remove(pool, id);
        pool->refs[id] = 1;
        ids[i] = id;
    }
    pool->n_free -= n;
    return MX_OK;
}

void block_pool_incref(BlockPool *pool, int32_t id) {
    MX_ASSERT(id >= 0 && id < pool->n_blocks && pool->refs[id] > 0);
    pool->refs[id]++;
}

void block_pool_decref(BlockPool *pool, int32_t id) {
    MX_ASSERT(id >= 0 && id < pool->n_blocks && pool->refs[id] > 0);
    if (--pool->refs[id] == 0) {
        list_push_tail(pool, id);
        pool->n_free++;
    }
}

void block_pool_check(const BlockPool *pool) {
    int on_list = 0;
    int32_t s = pool->n_blocks;
    for (int32_t id = pool->next[s]; id != s; id = pool->next[id]) {
        MX_ASSERT(id >= 0 && id < pool->n_blocks && pool->refs[id] == 0);
        MX_ASSERT(pool->next[pool->prev[id]] == id);
        MX_ASSERT(++on_list <= pool->n_blocks);
    }
    int live = 0;
    for (int32_t id = 0; id < pool->n_blocks; id++) {
        MX_ASSERT(pool->refs[id] >= 0);
        live += pool->refs[id] > 0;
    }
    MX_ASSERT(on_list == pool->n_free);
    MX_ASSERT(on_list + live == pool->n_blocks);
}

MxStatus block_table_reserve(BlockTable *t, BlockPool *pool, int block_size, int n_tokens) {
    if (block_size <= 0 || n_tokens < 0) return mx_fail(MX_ERR_ARG, "block_size %d, n_tokens %d", block_size, n_tokens);
    int need = blocks_for_tokens(n_tokens, block_size);
    if (need <= t->n_blocks) return MX_OK;
    if (need - t->n_blocks > pool->n_free)
        return mx_fail(MX_ERR_KV_FULL, "need %d more blocks, %d free", need - t->n_blocks, pool->n_free);
    if (need > t->capacity) {
        int cap = t->capacity ? t->capacity : 8;
        while (cap < need) cap *= 2;
        int32_t *ids = mx_realloc(t->ids, (size_t)cap * sizeof *ids);
        if (!ids) return mx_fail(MX_ERR_NOMEM, "block table of %d blocks", cap);
        t->ids = ids;
        t->capacity = cap;
    }
    MxStatus st = block_pool_alloc(pool, need - t->n_blocks, t->ids + t->n_blocks);
    if (st == MX_OK) t->n_blocks = need;
    return st;
}

void block_table_release(BlockTable *t, BlockPool *pool) {
    for (int i = 0; i < t->n_blocks; i++) block_pool_decref(pool, t->ids[i]);
    mx_free(t->ids);
    memset(t, 0, sizeof *t);
}
