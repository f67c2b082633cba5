// KV-cache bookkeeping, pure host metadata: a pool of fixed-size blocks with reference
// counts, and per-sequence block tables. The K/V pages themselves live in backend memory
// (see model.h); block b holds token slots b * block_size .. (b + 1) * block_size - 1.
//
// Invariant (block_pool_check): free + live == total, and a block is on the free list
// exactly when its reference count is 0. The engine issue adds the prefix cache (a third,
// "cached" state) on top of this.
#ifndef MYRMEX_KV_CACHE_H
#define MYRMEX_KV_CACHE_H

#include <stdint.h>

#include "status.h"

typedef struct BlockPool {
    int n_blocks;
    int n_free;
    int32_t *refs; // [n_blocks] reference counts
    // Intrusive doubly linked free list over block ids; index n_blocks is the sentinel.
    // Freed blocks go to the tail and allocation takes from the head (LRU order).
    int32_t *next, *prev; // [n_blocks + 1]
} BlockPool;

// On error (MX_ERR_ARG for n_blocks <= 0, MX_ERR_NOMEM) *pool is zeroed.
MxStatus block_pool_init(BlockPool *pool, int n_blocks);
void block_pool_destroy(BlockPool *pool);

// Allocates n blocks with reference count 1 into ids[0..n). All or nothing: when fewer than
// n are free, returns MX_ERR_KV_FULL and changes nothing.
MxStatus block_pool_alloc(BlockPool *pool, int n, int32_t *ids);
// Adds a reference to a live block (sharing, for the prefix cache and forks).
void block_pool_incref(BlockPool *pool, int32_t id);
// Drops a reference; at 0 the block returns to the free list.
void block_pool_decref(BlockPool *pool, int32_t id);

static inline int block_pool_free_count(const BlockPool *p) { return p->n_free; }
static inline int block_pool_live_count(const BlockPool *p) { return p->n_blocks - p->n_free; }

// Walks the pool and aborts if the invariant is broken (debug builds and tests).
void block_pool_check(const BlockPool *pool);

// The blocks of one sequence, in token order.
typedef struct BlockTable {
    int32_t *ids;
    int n_blocks;
    int capacity;
} BlockTable;

// Blocks needed to hold n_tokens.
static inline int blocks_for_tokens(int n_tokens, int block_size) {
    return (int)(((int64_t)n_tokens + block_size - 1) / block_size);
}

// Grows t so that it can hold n_tokens, allocating from pool. All or nothing: on
// MX_ERR_KV_FULL or MX_ERR_NOMEM, t and pool are unchanged.
MxStatus block_table_reserve(BlockTable *t, BlockPool *pool, int block_size, int n_tokens);
// Returns every block of t to pool and empties t (its memory too).
void block_table_release(BlockTable *t, BlockPool *pool);

#endif
