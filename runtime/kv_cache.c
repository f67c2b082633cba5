// Block pool, prefix cache and block tables (see kv_cache.h).
#include "kv_cache.h"

#include <string.h>

#include "alloc.h"

// ---- free list ---------------------------------------------------------------------------

static bool on_list(const BlockPool *p, int32_t id) { return p->next[id] >= 0; }

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

static bool registered(const BlockPool *p, int32_t id) { return p->serial && p->serial[id] != 0; }

MxStatus block_pool_init(BlockPool *pool, int n_blocks) {
    memset(pool, 0, sizeof *pool);
    if (n_blocks < 2)
        return mx_fail(MX_ERR_ARG, "KV pool needs at least 2 blocks (block 0 is the null block), got %d", n_blocks);
    pool->refs = mx_calloc((size_t)n_blocks, sizeof *pool->refs);
    pool->next = mx_calloc((size_t)n_blocks + 1, sizeof *pool->next);
    pool->prev = mx_calloc((size_t)n_blocks + 1, sizeof *pool->prev);
    if (!pool->refs || !pool->next || !pool->prev) {
        block_pool_destroy(pool);
        return mx_fail(MX_ERR_NOMEM, "KV block pool of %d blocks", n_blocks);
    }
    pool->n_blocks = n_blocks;
    pool->next[n_blocks] = pool->prev[n_blocks] = n_blocks; // empty list: sentinel to itself
    pool->next[KV_NULL_BLOCK] = pool->prev[KV_NULL_BLOCK] = -1;
    for (int32_t i = 1; i < n_blocks; i++) list_push_tail(pool, i);
    pool->n_free = n_blocks - 1;
    return MX_OK;
}

static void free_prefix_tables(BlockPool *p) {
    mx_free(p->hash);
    mx_free(p->serial);
    mx_free(p->parent_serial);
    mx_free(p->tokens);
    mx_free(p->bucket);
    mx_free(p->bucket_next);
    p->hash = p->serial = p->parent_serial = NULL;
    p->tokens = p->bucket = p->bucket_next = NULL;
    p->block_size = 0;
    p->bucket_mask = 0;
    p->n_registered = 0;
}

void block_pool_destroy(BlockPool *pool) {
    free_prefix_tables(pool);
    mx_free(pool->refs);
    mx_free(pool->next);
    mx_free(pool->prev);
    memset(pool, 0, sizeof *pool);
}

// ---- prefix cache table ------------------------------------------------------------------

MxStatus block_pool_enable_prefix_cache(BlockPool *pool, int block_size) {
    if (block_size <= 0) return mx_fail(MX_ERR_ARG, "prefix cache block size %d", block_size);
    if (pool->block_size == block_size) return MX_OK;
    if (pool->block_size) return mx_fail(MX_ERR_ARG, "prefix cache is already on with blocks of %d tokens", pool->block_size);
    size_t n = (size_t)pool->n_blocks, buckets = 1;
    while (buckets < n) buckets *= 2;
    pool->hash = mx_calloc(n, sizeof *pool->hash);
    pool->serial = mx_calloc(n, sizeof *pool->serial);
    pool->parent_serial = mx_calloc(n, sizeof *pool->parent_serial);
    pool->tokens = mx_calloc(n, (size_t)block_size * sizeof *pool->tokens);
    pool->bucket = mx_malloc(buckets * sizeof *pool->bucket);
    pool->bucket_next = mx_malloc(n * sizeof *pool->bucket_next);
    if (!pool->hash || !pool->serial || !pool->parent_serial || !pool->tokens || !pool->bucket || !pool->bucket_next) {
        free_prefix_tables(pool);
        return mx_fail(MX_ERR_NOMEM, "prefix cache of %d blocks x %d tokens", pool->n_blocks, block_size);
    }
    memset(pool->bucket, 0xff, buckets * sizeof *pool->bucket);
    memset(pool->bucket_next, 0xff, n * sizeof *pool->bucket_next);
    pool->bucket_mask = (uint32_t)(buckets - 1);
    pool->block_size = block_size;
    if (!pool->next_serial) pool->next_serial = 1;
    return MX_OK;
}

static void unregister(BlockPool *p, int32_t id) {
    int32_t *link = &p->bucket[p->hash[id] & p->bucket_mask];
    while (*link != id) {
        MX_ASSERT(*link >= 0);
        link = &p->bucket_next[*link];
    }
    *link = p->bucket_next[id];
    p->bucket_next[id] = -1;
    p->serial[id] = p->parent_serial[id] = p->hash[id] = 0;
    p->n_registered--;
    if (p->refs[id] == 0) { // on the free list: cached -> free
        p->n_cached--;
        p->n_free++;
    }
}

void block_pool_disable_prefix_cache(BlockPool *pool) {
    if (!pool->block_size) return;
    for (int32_t id = 1; id < pool->n_blocks; id++)
        if (registered(pool, id)) unregister(pool, id);
    free_prefix_tables(pool);
}

// 64-bit multiply-xorshift over the token words, seeded by the parent, with splitmix64's
// finalizer. Only a candidate filter: hits are verified, so its quality is speed, not safety.
uint64_t block_hash(uint64_t parent, const int32_t *tokens, int n) {
    uint64_t h = parent ^ 0x9e3779b97f4a7c15ull ^ ((uint64_t)(uint32_t)n << 32);
    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)tokens[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

int32_t block_pool_lookup(const BlockPool *pool, uint64_t hash, uint64_t parent_serial, const int32_t *tokens) {
    if (!pool->block_size) return -1;
    size_t bytes = (size_t)pool->block_size * sizeof *tokens;
    for (int32_t id = pool->bucket[hash & pool->bucket_mask]; id >= 0; id = pool->bucket_next[id]) {
        if (pool->hash[id] == hash && pool->parent_serial[id] == parent_serial &&
            memcmp(pool->tokens + (size_t)id * pool->block_size, tokens, bytes) == 0)
            return id;
    }
    return -1;
}

void block_pool_take(BlockPool *pool, int32_t id) {
    MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && registered(pool, id));
    if (pool->refs[id]++ == 0) {
        list_remove(pool, id);
        pool->n_cached--;
    }
}

uint64_t block_pool_register(BlockPool *pool, int32_t id, uint64_t hash, uint64_t parent_serial,
                             const int32_t *tokens) {
    if (!pool->block_size) return 0;
    MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && pool->refs[id] > 0 && !registered(pool, id));
    int32_t same = block_pool_lookup(pool, hash, parent_serial, tokens);
    if (same >= 0) return pool->serial[same];
    pool->hash[id] = hash;
    pool->serial[id] = pool->next_serial++;
    pool->parent_serial[id] = parent_serial;
    memcpy(pool->tokens + (size_t)id * pool->block_size, tokens, (size_t)pool->block_size * sizeof *tokens);
    int32_t *head = &pool->bucket[hash & pool->bucket_mask];
    pool->bucket_next[id] = *head;
    *head = id;
    pool->n_registered++;
    return pool->serial[id];
}

// ---- allocation and references -----------------------------------------------------------

MxStatus block_pool_alloc(BlockPool *pool, int n, int32_t *ids) {
    if (n < 0) return mx_fail(MX_ERR_ARG, "negative block count");
    if (n > block_pool_available(pool))
        return mx_fail(MX_ERR_KV_FULL, "need %d blocks, %d available", n, block_pool_available(pool));
    for (int i = 0; i < n; i++) {
        int32_t id = pool->next[pool->n_blocks];
        if (registered(pool, id)) { // the least recently used cached block: evict it
            unregister(pool, id);
            pool->evictions++;
        }
        list_remove(pool, id);
        pool->n_free--;
        pool->refs[id] = 1;
        ids[i] = id;
    }
    return MX_OK;
}

void block_pool_incref(BlockPool *pool, int32_t id) {
    MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && pool->refs[id] > 0);
    pool->refs[id]++;
}

void block_pool_decref(BlockPool *pool, int32_t id) {
    MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && pool->refs[id] > 0);
    if (--pool->refs[id] == 0) {
        list_push_tail(pool, id);
        if (registered(pool, id)) pool->n_cached++;
        else pool->n_free++;
    }
}

void block_pool_check(const BlockPool *pool) {
    int32_t s = pool->n_blocks;
    int listed = 0, listed_cached = 0, live = 0, n_registered = 0;
    for (int32_t id = pool->next[s]; id != s; id = pool->next[id]) {
        MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && pool->refs[id] == 0);
        MX_ASSERT(pool->next[pool->prev[id]] == id);
        MX_ASSERT(++listed <= pool->n_blocks);
        listed_cached += registered(pool, id);
    }
    MX_ASSERT(pool->refs[KV_NULL_BLOCK] == 0 && !on_list(pool, KV_NULL_BLOCK));
    for (int32_t id = 1; id < pool->n_blocks; id++) {
        MX_ASSERT(pool->refs[id] >= 0);
        MX_ASSERT((pool->refs[id] == 0) == on_list(pool, id));
        live += pool->refs[id] > 0;
        n_registered += registered(pool, id);
    }
    MX_ASSERT(listed_cached == pool->n_cached && listed - listed_cached == pool->n_free);
    MX_ASSERT(pool->n_free + pool->n_cached + live == block_pool_total(pool));
    MX_ASSERT(n_registered == pool->n_registered);
    if (!pool->block_size) return;
    // Every registered block sits in its hash's bucket, and the buckets hold nothing else.
    int in_buckets = 0;
    for (uint32_t b = 0; b <= pool->bucket_mask; b++) {
        for (int32_t id = pool->bucket[b]; id >= 0; id = pool->bucket_next[id]) {
            MX_ASSERT(id > KV_NULL_BLOCK && id < pool->n_blocks && registered(pool, id));
            MX_ASSERT((pool->hash[id] & pool->bucket_mask) == b);
            MX_ASSERT(++in_buckets <= pool->n_registered);
        }
    }
    MX_ASSERT(in_buckets == pool->n_registered);
}

// ---- block tables ------------------------------------------------------------------------

MxStatus block_table_grow(BlockTable *t, int n_blocks) {
    if (n_blocks <= t->capacity) return MX_OK;
    int cap = t->capacity ? t->capacity : 8;
    while (cap < n_blocks) cap = cap > INT32_MAX / 2 ? n_blocks : cap * 2;
    int32_t *ids = mx_realloc(t->ids, (size_t)cap * sizeof *ids);
    if (!ids) return mx_fail(MX_ERR_NOMEM, "block table of %d blocks", cap);
    t->ids = ids;
    t->capacity = cap;
    return MX_OK;
}

MxStatus block_table_reserve(BlockTable *t, BlockPool *pool, int block_size, int n_tokens) {
    if (block_size <= 0 || n_tokens < 0) return mx_fail(MX_ERR_ARG, "block_size %d, n_tokens %d", block_size, n_tokens);
    int need = blocks_for_tokens(n_tokens, block_size);
    if (need <= t->n_blocks) return MX_OK;
    if (need - t->n_blocks > block_pool_available(pool))
        return mx_fail(MX_ERR_KV_FULL, "need %d more blocks, %d available", need - t->n_blocks, block_pool_available(pool));
    MxStatus st = block_table_grow(t, need);
    if (st == MX_OK) st = block_pool_alloc(pool, need - t->n_blocks, t->ids + t->n_blocks);
    if (st == MX_OK) t->n_blocks = need;
    return st;
}

void block_table_release(BlockTable *t, BlockPool *pool) {
    for (int i = t->n_blocks - 1; i >= 0; i--) block_pool_decref(pool, t->ids[i]);
    mx_free(t->ids);
    memset(t, 0, sizeof *t);
}
