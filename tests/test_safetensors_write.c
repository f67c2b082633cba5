// Round trips of runtime/safetensors_write through the reader (runtime/safetensors.h).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "test_util.h"

static MxStatus fill_iota(void *ctx, void *dst, uint64_t first, uint64_t count) {
    int *calls = ctx;
    (*calls)++;
    for (uint64_t i = 0; i < count; i++) ((float *)dst)[i] = (float)(first + i);
    return MX_OK;
}

static MxStatus fill_fail(void *ctx, void *dst, uint64_t first, uint64_t count) {
    (void)ctx, (void)dst, (void)first, (void)count;
    return mx_fail(MX_ERR_OPS, "injected");
}

static void test_round_trip(void) {
    const char *dir = test_tmpdir("stw");
    char path[4096];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    StWriter w;
    st_writer_init(&w);
    CHECK_STATUS(st_writer_set_metadata(&w, "format", "pt"), MX_OK);
    CHECK_STATUS(st_writer_set_metadata(&w, "format", "np"), MX_OK); // replaces
    uint16_t half[6] = {1, 2, 3, 4, 5, 6};
    float scalar = 3.5f;
    int calls = 0;
    int64_t s23[2] = {2, 3}, s0[1] = {0}, big[1] = {3 << 20}; // 12 MiB of f32: 3 chunks
    CHECK_STATUS(st_writer_add(&w, "a \"quoted\"\\name\n", DT_BF16, 2, s23, half), MX_OK);
    CHECK_STATUS(st_writer_add(&w, "scalar", DT_F32, 0, NULL, &scalar), MX_OK);
    CHECK_STATUS(st_writer_add(&w, "empty", DT_F16, 1, s0, half), MX_OK);
    CHECK_STATUS(st_writer_add_fill(&w, "big", DT_F32, 1, big, fill_iota, &calls), MX_OK);
    CHECK_STATUS(st_writer_add(&w, "scalar", DT_F32, 0, NULL, &scalar), MX_ERR_ARG);
    CHECK_STATUS(st_writer_add(&w, "__metadata__", DT_F32, 0, NULL, &scalar), MX_ERR_ARG);
    CHECK_STATUS(st_writer_add(&w, "", DT_F32, 0, NULL, &scalar), MX_ERR_ARG);
    CHECK_STATUS(st_writer_add(&w, "bad\xff", DT_F32, 0, NULL, &scalar), MX_ERR_ARG);
    int64_t neg[1] = {-1}, huge[2] = {INT64_MAX, 4};
    CHECK_STATUS(st_writer_add(&w, "neg", DT_F32, 1, neg, &scalar), MX_ERR_ARG);
    CHECK_STATUS(st_writer_add(&w, "huge", DT_F32, 2, huge, &scalar), MX_ERR_ST_SIZE_OVERFLOW);
    CHECK_STATUS(st_writer_add(&w, "rank9", DT_F32, 9, huge, &scalar), MX_ERR_ARG);
    CHECK(w.n_tensors == 4);
    uint64_t hb = st_writer_header_bytes(&w);
    CHECK(hb % 8 == 0);
    CHECK_STATUS(st_writer_write(&w, path), MX_OK);
    CHECK(calls == 3);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == 8 + hb + w.data_bytes);
    StFile f;
    CHECK_STATUS(st_open(path, &f), MX_OK);
    CHECK(f.n_tensors == 4);
    const StTensor *t = st_find(&f, "a \"quoted\"\\name\n");
    CHECK(t && t->dtype == ST_BF16 && t->rank == 2 && t->shape[1] == 3 && memcmp(t->data, half, 12) == 0);
    t = st_find(&f, "scalar");
    CHECK(t && t->rank == 0 && t->nbytes == 4 && *(const float *)t->data == 3.5f);
    t = st_find(&f, "empty");
    CHECK(t && t->nbytes == 0);
    t = st_find(&f, "big");
    CHECK(t && t->nbytes == (12u << 20) && ((const float *)t->data)[(3 << 20) - 1] == (float)((3 << 20) - 1));
    st_close(&f);

    // A failing callback or an unwritable path: an error and no file left behind.
    StWriter w2;
    st_writer_init(&w2);
    CHECK_STATUS(st_writer_add_fill(&w2, "x", DT_F32, 1, big, fill_fail, NULL), MX_OK);
    snprintf(path, sizeof path, "%s/b.safetensors", dir);
    CHECK_STATUS(st_writer_write(&w2, path), MX_ERR_OPS);
    CHECK(stat(path, &st) != 0);
    CHECK_STATUS(st_writer_write(&w, "/nonexistent-dir/x.safetensors"), MX_ERR_IO);
    st_writer_free(&w2);

    // Allocation failures while writing: MX_ERR_NOMEM, nothing leaked (ASan).
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    for (long n = 0;; n++) {
        mx_alloc_fail_after(n);
        MxStatus s = st_writer_write(&w, path);
        mx_alloc_fail_after(-1);
        if (s == MX_OK) break;
        CHECK_STATUS(s, MX_ERR_NOMEM);
        CHECK(stat(path, &st) != 0);
        if (n > 100) { CHECK(0); break; }
    }
    st_writer_free(&w);
    CHECK(w.n_tensors == 0 && w.tensors == NULL);

    // No tensors at all: "{}" padded to 8 bytes, still a valid file.
    st_writer_init(&w);
    snprintf(path, sizeof path, "%s/d.safetensors", dir);
    CHECK_STATUS(st_writer_write(&w, path), MX_OK);
    CHECK(stat(path, &st) == 0 && st.st_size == 16);
    st_writer_free(&w);
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    RUN(test_round_trip);
    return test_exit();
}
