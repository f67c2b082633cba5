// libFuzzer target for the safetensors parser (st_parse) and the strict JSON/UTF-8 checks.
// Built with clang under ASan + UBSan (cmake -DMYRMEX_FUZZ=ON): 20,000 inputs in the test
// suite (CTest label fuzz), longer with scripts/fuzz.sh [SECONDS], which also holds the seeds.
//
// The input is used twice: as a whole file (u64 N | header | data), and as a header alone
// behind a computed N, so the fuzzer reaches the JSON and geometry checks without having to
// guess a matching length prefix. Every accepted file is checked against the invariants
// st_parse promises: tensors sorted by name, spans inside the buffer, sizes consistent.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static void check_file(const StFile *f, const uint8_t *buf, size_t size) {
    uint64_t total = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        if (i > 0 && strcmp(f->tensors[i - 1].name, t->name) >= 0) abort();
        if (st_find(f, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < buf || p > buf + size || t->nbytes > (uint64_t)(buf + size - p)) abort();
        if (t->rank < 0 || t->rank > ST_MAX_RANK) abort();
        uint64_t n = st_dtype_size(t->dtype);
        for (int k = 0; k < t->rank; k++) n *= (uint64_t)t->shape[k];
        if (n != t->nbytes) abort();
        if (t->nbytes) {
            volatile uint8_t first = p[0], last = p[t->nbytes - 1]; // in bounds, or ASan says so
            (void)first;
            (void)last;
        }
        total += t->nbytes;
    }
    if (f->n_tensors > 0 && total > size) abort();
}

static void run(const uint8_t *buf, size_t size) {
    StFile f;
    if (st_parse(buf, size, &f) == MX_OK) {
        check_file(&f, buf, size);
        st_close(&f);
    } else {
        static const StFile zero;
        if (memcmp(&f, &zero, sizeof f) != 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // The input exactly as a file.
    uint8_t *copy = malloc(size ? size : 1); // an exact-size heap block: ASan sees overreads
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    run(copy, size);
    free(copy);

    // The input as a header: the first byte says how much of the tail is data.
    if (size < 2) return 0;
    size_t data_len = data[0] % 64;
    if (data_len > size - 1) data_len = size - 1;
    size_t hlen = size - 1 - data_len;
    uint8_t *file = malloc(8 + hlen + data_len);
    if (!file) return 0;
    for (int k = 0; k < 8; k++) file[k] = (uint8_t)((uint64_t)hlen >> (8 * k));
    memcpy(file + 8, data + 1, hlen + data_len);
    run(file, 8 + hlen + data_len);
    free(file);
    return 0;
}
