// KV-cache bookkeeping, pure host metadata: a pool of fixed-size blocks with reference
// counts, a prefix cache of full blocks, and per-sequence block tables. The K/V pages
// themselves live in backend memory (see model.h); block b holds token slots
// b * block_size .. (b + 1) * block_size - 1.
//
// Block 0 is the null block: never allocated, never freed, a harmless target for padding
// (a padded batch row may point its slot or page at it). Every other block is in exactly one
// state:
//
//   free    refs 0, on the free list, no cached content
//   cached  refs 0, on the free list, registered in the prefix cache (evictable)
//   live    refs > 0, held by one or more block tables (may also be registered, then shared)
//
// Invariant (block_pool_check): free + live + cached == total == n_blocks - 1.
//
// The free list is intrusive and doubly linked with a sentinel; released blocks go to the
// tail and allocation takes from the head, so the least recently used cached block is the
// one evicted (its registration is dropped when it is handed out again).
//
// Prefix cache: a full block (block_size tokens whose K/V are computed) is registered under
// the chained hash of its tokens, h_i = block_hash(h_{i-1}, tokens of block i), h_{-1} = 0.
// The hash only finds candidates: a hit is verified on the block's own tokens and on the
// identity (serial number) of the content before it, so a hash collision can never return
// wrong K/V. Serial numbers are unique for the life of the pool, so a parent evicted and
// reused for other tokens can never be mistaken for the old one.
#ifndef MYRMEX_KV_CACHE_H
#define MYRMEX_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

#define KV_NULL_BLOCK 0

typedef struct BlockPool {
    int n_blocks;          // pages, including the null block
    int n_free, n_cached;  // blocks on the free list without / with cached content
    int32_t *refs;         // [n_blocks] reference counts
    int32_t *next, *prev;  // [n_blocks + 1] free list; index n_blocks is the sentinel
    // Prefix cache: all NULL / 0 until block_pool_enable_prefix_cache.
    int block_size;          // tokens per block; 0 = prefix cache off
    uint64_t *hash;          // [n_blocks] chained hash of a registered block
    uint64_t *serial;        // [n_blocks] unique id of registered content; 0 = not registered
    uint64_t *parent_serial; // [n_blocks] serial of the content of the block before it; 0 = first
    int32_t *tokens;         // [n_blocks, block_size] a registered block's token ids
    int32_t *bucket;         // [bucket_mask + 1] first registered block per hash bucket, -1
    int32_t *bucket_next;    // [n_blocks] next registered block in the same bucket, -1
    uint32_t bucket_mask;
    uint64_t next_serial;
    int n_registered;        // blocks with serial != 0 (cached or live)
    long evictions;          // cached blocks handed out again (their content dropped)
} BlockPool;

// n_blocks pages, block 0 the null block (so n_blocks - 1 usable). On error (MX_ERR_ARG for
// n_blocks < 2, MX_ERR_NOMEM) *pool is zeroed.
MxStatus block_pool_init(BlockPool *pool, int n_blocks);
void block_pool_destroy(BlockPool *pool);

// Turns the prefix cache on for blocks of block_size tokens. MX_ERR_ARG if it is already
// on with another size; MX_ERR_NOMEM leaves it off. Idempotent for the same size.
MxStatus block_pool_enable_prefix_cache(BlockPool *pool, int block_size);
// Drops every registration (cached blocks become free) and turns the prefix cache off.
void block_pool_disable_prefix_cache(BlockPool *pool);

// Allocates n blocks with reference count 1 into ids[0..n), taking free-list order (cached
// blocks are evicted). All or nothing: when fewer than n are available, returns
// MX_ERR_KV_FULL and changes nothing.
MxStatus block_pool_alloc(BlockPool *pool, int n, int32_t *ids);
// Adds a reference to a live block (sharing).
void block_pool_incref(BlockPool *pool, int32_t id);
// Drops a reference; at 0 the block returns to the tail of the free list (as cached when
// it is registered).
void block_pool_decref(BlockPool *pool, int32_t id);

static inline int block_pool_total(const BlockPool *p) { return p->n_blocks - 1; }
static inline int block_pool_free_count(const BlockPool *p) { return p->n_free; }
static inline int block_pool_cached_count(const BlockPool *p) { return p->n_cached; }
static inline int block_pool_live_count(const BlockPool *p) { return p->n_blocks - 1 - p->n_free - p->n_cached; }
// Blocks an allocation can take now: free + cached.
static inline int block_pool_available(const BlockPool *p) { return p->n_free + p->n_cached; }
static inline bool block_pool_prefix_cache_on(const BlockPool *p) { return p->block_size > 0; }

// The chained hash of one block: parent is the previous block's hash (0 for the first).
uint64_t block_hash(uint64_t parent, const int32_t *tokens, int n);

// The registered block holding `tokens` (block_size of them) after content parent_serial
// (0 for the first block of a sequence), or -1. Changes nothing.
int32_t block_pool_lookup(const BlockPool *pool, uint64_t hash, uint64_t parent_serial, const int32_t *tokens);
// Takes a reference on a block lookup returned: a cached block becomes live (leaves the
// free list), a live one gains a sharer.
void block_pool_take(BlockPool *pool, int32_t id);
// Registers live block id, whose K/V hold `tokens` (block_size of them) after content
// parent_serial, under hash. Returns the serial of that content: the block's new serial, or
// the serial of an identical block already registered (id then stays unregistered, since
// one copy is enough). Returns 0 when the prefix cache is off.
uint64_t block_pool_register(BlockPool *pool, int32_t id, uint64_t hash, uint64_t parent_serial,
                             const int32_t *tokens);

// Walks the pool and aborts if an invariant is broken (debug builds and tests).
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

// Makes room for n_blocks ids without allocating blocks. MX_ERR_NOMEM leaves t unchanged.
MxStatus block_table_grow(BlockTable *t, int n_blocks);
// Grows t so that it can hold n_tokens, allocating from pool. All or nothing: on
// MX_ERR_KV_FULL or MX_ERR_NOMEM, t and pool are unchanged.
MxStatus block_table_reserve(BlockTable *t, BlockPool *pool, int block_size, int n_tokens);
// Returns every block of t to pool, last block first (so a sequence's tail is evicted
// before its prefix), and empties t (its memory too).
void block_table_release(BlockTable *t, BlockPool *pool);

#endif
