// The block pool's prefix cache: chained hashes, verified hits, the cached state, LRU
// eviction, duplicate registrations, serial numbers that outlive eviction, and a random
// workload against a reference model of every block's state, with the pool's invariant
// (free + live + cached == total) checked after every operation.
#include <string.h>

#include "kv_cache.h"
#include "test_util.h"

enum { BS = 4 };

static void fill(int32_t *t, int32_t first) {
    for (int i = 0; i < BS; i++) t[i] = first + i;
}

static void test_hash_chain(void) {
    int32_t a[BS], b[BS];
    fill(a, 10);
    fill(b, 10);
    CHECK(block_hash(0, a, BS) == block_hash(0, b, BS));
    b[3]++;
    CHECK(block_hash(0, a, BS) != block_hash(0, b, BS));
    // The same tokens after a different prefix hash differently.
    CHECK(block_hash(1, a, BS) != block_hash(2, a, BS));
    CHECK(block_hash(0, a, BS - 1) != block_hash(0, a, BS));
}

static void test_register_lookup_take(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 9), MX_OK);
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, BS), MX_OK);
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, BS), MX_OK); // same size: no-op
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, 8), MX_ERR_ARG);
    int32_t ids[2], t0[BS], t1[BS];
    fill(t0, 100);
    fill(t1, 200);
    uint64_t h0 = block_hash(0, t0, BS), h1 = block_hash(h0, t1, BS);
    CHECK_STATUS(block_pool_alloc(&p, 2, ids), MX_OK);
    CHECK(block_pool_lookup(&p, h0, 0, t0) == -1);
    uint64_t s0 = block_pool_register(&p, ids[0], h0, 0, t0);
    uint64_t s1 = block_pool_register(&p, ids[1], h1, s0, t1);
    CHECK(s0 != 0 && s1 != 0 && s0 != s1);
    block_pool_check(&p);
    // Hits are verified: the right hash with other tokens or another parent is a miss.
    CHECK(block_pool_lookup(&p, h0, 0, t0) == ids[0]);
    CHECK(block_pool_lookup(&p, h1, s0, t1) == ids[1]);
    CHECK(block_pool_lookup(&p, h1, s1, t1) == -1);
    CHECK(block_pool_lookup(&p, h0, 0, t1) == -1);
    CHECK(block_pool_lookup(&p, h1, 0, t1) == -1);
    // A live registered block is shared by taking it.
    block_pool_take(&p, ids[0]);
    CHECK(p.refs[ids[0]] == 2 && block_pool_live_count(&p) == 2);
    block_pool_decref(&p, ids[0]);
    // Released, registered blocks are cached: still found, counted apart from free.
    block_pool_decref(&p, ids[1]);
    block_pool_decref(&p, ids[0]);
    CHECK(block_pool_cached_count(&p) == 2 && block_pool_free_count(&p) == 6 && block_pool_live_count(&p) == 0);
    CHECK(block_pool_available(&p) == 8);
    block_pool_check(&p);
    CHECK(block_pool_lookup(&p, h0, 0, t0) == ids[0]);
    // Taking a cached block makes it live again.
    block_pool_take(&p, ids[0]);
    CHECK(block_pool_cached_count(&p) == 1 && block_pool_live_count(&p) == 1 && p.refs[ids[0]] == 1);
    block_pool_check(&p);
    block_pool_decref(&p, ids[0]);
    // Disabling the cache turns cached blocks into free ones.
    block_pool_disable_prefix_cache(&p);
    CHECK(block_pool_cached_count(&p) == 0 && block_pool_free_count(&p) == 8 && !block_pool_prefix_cache_on(&p));
    CHECK(block_pool_lookup(&p, h0, 0, t0) == -1);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

static void test_lru_eviction(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 5), MX_OK); // 4 usable
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, BS), MX_OK);
    int32_t ids[4], t[4][BS];
    uint64_t h[4];
    CHECK_STATUS(block_pool_alloc(&p, 4, ids), MX_OK);
    for (int i = 0; i < 4; i++) {
        fill(t[i], 10 * i);
        h[i] = block_hash(0, t[i], BS);
        block_pool_register(&p, ids[i], h[i], 0, t[i]);
    }
    // Release order 2, 0, 3, 1: the least recently released is evicted first.
    int order[4] = {2, 0, 3, 1};
    for (int i = 0; i < 4; i++) block_pool_decref(&p, ids[order[i]]);
    CHECK(block_pool_cached_count(&p) == 4 && block_pool_free_count(&p) == 0);
    int32_t got[2];
    CHECK_STATUS(block_pool_alloc(&p, 2, got), MX_OK);
    CHECK(got[0] == ids[2] && got[1] == ids[0]);
    CHECK(p.evictions == 2);
    CHECK(block_pool_lookup(&p, h[2], 0, t[2]) == -1 && block_pool_lookup(&p, h[0], 0, t[0]) == -1);
    CHECK(block_pool_lookup(&p, h[3], 0, t[3]) == ids[3] && block_pool_lookup(&p, h[1], 0, t[1]) == ids[1]);
    CHECK(block_pool_cached_count(&p) == 2 && block_pool_live_count(&p) == 2);
    block_pool_check(&p);
    // All or nothing with cached blocks counted as available.
    int32_t three[3] = {-1, -1, -1};
    CHECK_STATUS(block_pool_alloc(&p, 3, three), MX_ERR_KV_FULL);
    CHECK(three[0] == -1 && block_pool_cached_count(&p) == 2);
    block_pool_decref(&p, got[0]);
    block_pool_decref(&p, got[1]);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

static void test_duplicates_and_serials(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, 6), MX_OK);
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, BS), MX_OK);
    int32_t a[2], b[2], t0[BS], t1[BS];
    fill(t0, 1);
    fill(t1, 50);
    uint64_t h0 = block_hash(0, t0, BS), h1 = block_hash(h0, t1, BS);
    CHECK_STATUS(block_pool_alloc(&p, 2, a), MX_OK);
    CHECK_STATUS(block_pool_alloc(&p, 2, b), MX_OK);
    // Two sequences computed the same first block: the second registration returns the
    // first's serial and leaves its own block unregistered, so its child chains on.
    uint64_t sa = block_pool_register(&p, a[0], h0, 0, t0);
    uint64_t sb = block_pool_register(&p, b[0], h0, 0, t0);
    CHECK(sa == sb && p.serial[b[0]] == 0 && p.n_registered == 1);
    uint64_t sb1 = block_pool_register(&p, b[1], h1, sb, t1);
    CHECK(block_pool_lookup(&p, h1, sa, t1) == b[1] && sb1 != 0);
    block_pool_decref(&p, b[0]); // unregistered: free, not cached
    CHECK(block_pool_free_count(&p) == 2 && block_pool_cached_count(&p) == 0);
    block_pool_check(&p);
    // The parent's content leaves the cache and its block is reused for other tokens: the
    // old child must not match under the new content, though the hash chain is the same.
    block_pool_decref(&p, a[1]);
    block_pool_decref(&p, a[0]); // a[0] cached, then evicted below (LRU after the free ones)
    int32_t all[4];
    CHECK_STATUS(block_pool_alloc(&p, 4, all), MX_OK);
    CHECK(block_pool_lookup(&p, h0, 0, t0) == -1);
    int32_t reused = -1;
    for (int i = 0; i < 4; i++)
        if (all[i] == a[0]) reused = all[i];
    CHECK(reused == a[0]);
    uint64_t s_new = block_pool_register(&p, reused, h0, 0, t0);
    CHECK(s_new != sa);
    CHECK(block_pool_lookup(&p, h1, s_new, t1) == -1); // b[1] hangs off the old serial
    CHECK(block_pool_lookup(&p, h1, sa, t1) == b[1]);
    for (int i = 0; i < 4; i++) block_pool_decref(&p, all[i]);
    block_pool_decref(&p, b[1]);
    CHECK(block_pool_live_count(&p) == 0);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

// ---- random workload against a reference model ------------------------------------------

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static int rnd(int n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

enum { N_BLOCKS = 24, N_HOLD = 64 };

// What the test knows: the references it holds, and the content it registered per block.
typedef struct Model {
    int32_t held[N_HOLD];
    int n_held;
    int refs[N_BLOCKS];
} Model;

static void check_against(const BlockPool *p, const Model *m) {
    int live = 0;
    for (int id = 1; id < N_BLOCKS; id++) {
        CHECK(p->refs[id] == m->refs[id]);
        live += m->refs[id] > 0;
    }
    CHECK(block_pool_live_count(p) == live);
    CHECK(block_pool_free_count(p) + block_pool_cached_count(p) + block_pool_live_count(p) == block_pool_total(p));
    block_pool_check(p);
}

static void test_random_workload(void) {
    BlockPool p;
    CHECK_STATUS(block_pool_init(&p, N_BLOCKS), MX_OK);
    CHECK_STATUS(block_pool_enable_prefix_cache(&p, BS), MX_OK);
    Model m = {0};
    int hits = 0, full = 0;
    for (int op = 0; op < 20000; op++) {
        int kind = rnd(10);
        int32_t t[BS];
        for (int i = 0; i < BS; i++) t[i] = rnd(3); // few distinct contents: many hits
        uint64_t h = block_hash(0, t, BS);
        if (kind < 3 && m.n_held + 3 <= N_HOLD) { // allocate 1..3, all or nothing
            int n = 1 + rnd(3), avail = block_pool_available(&p), cached = block_pool_cached_count(&p);
            int32_t ids[3];
            MxStatus st = block_pool_alloc(&p, n, ids);
            if (n > avail) {
                CHECK_STATUS(st, MX_ERR_KV_FULL);
                CHECK(block_pool_available(&p) == avail && block_pool_cached_count(&p) == cached);
                full++;
            } else {
                CHECK_STATUS(st, MX_OK);
                for (int i = 0; i < n; i++) {
                    CHECK(ids[i] != KV_NULL_BLOCK && m.refs[ids[i]] == 0);
                    CHECK(p.serial[ids[i]] == 0); // a handed-out block carries no old content
                    m.refs[ids[i]] = 1;
                    m.held[m.n_held++] = ids[i];
                }
            }
        } else if (kind < 5 && m.n_held > 0) { // release one reference
            int k = rnd(m.n_held);
            int32_t id = m.held[k];
            m.held[k] = m.held[--m.n_held];
            block_pool_decref(&p, id);
            m.refs[id]--;
        } else if (kind < 7 && m.n_held > 0) { // register a held block
            int32_t id = m.held[rnd(m.n_held)];
            if (p.serial[id] == 0) {
                int32_t other = block_pool_lookup(&p, h, 0, t);
                uint64_t s = block_pool_register(&p, id, h, 0, t);
                CHECK(s != 0);
                CHECK(other < 0 ? p.serial[id] == s : (p.serial[id] == 0 && s == p.serial[other]));
            }
        } else if (m.n_held < N_HOLD) { // look up and take a hit
            int32_t id = block_pool_lookup(&p, h, 0, t);
            if (id >= 0) {
                CHECK(memcmp(p.tokens + (size_t)id * BS, t, sizeof t) == 0);
                block_pool_take(&p, id);
                m.refs[id]++;
                m.held[m.n_held++] = id;
                hits++;
            }
        }
        check_against(&p, &m);
    }
    CHECK(hits > 100 && full > 10 && p.evictions > 10); // the workload reached every state
    while (m.n_held > 0) {
        block_pool_decref(&p, m.held[--m.n_held]);
    }
    CHECK(block_pool_live_count(&p) == 0);
    block_pool_check(&p);
    block_pool_destroy(&p);
}

int main(void) {
    RUN(test_hash_chain);
    RUN(test_register_lookup_take);
    RUN(test_lru_eviction);
    RUN(test_duplicates_and_serials);
    RUN(test_random_workload);
    return test_exit();
}
