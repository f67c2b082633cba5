// The transport-independent half of comm.h: dispatch and the fault-injection hook.
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void comm_fault_init(Comm *c) {
    c->fault_kind = 0;
    const char *spec = getenv("MYRMEX_FAULT");
    if (!spec) return;
    int rank;
    char kind[16];
    long after;
    if (sscanf(spec, "%d:%15[a-z]:%ld", &rank, kind, &after) != 3 || rank != c->rank) return;
    c->fault_kind = strcmp(kind, "stall") == 0 ? 1 : strcmp(kind, "exit") == 0 ? 2 : 0;
    c->fault_after = after;
}

// Called before every collective: the injected fault fires at the chosen one. A stalled rank
// sleeps until the others abort the group (its own calls then fail) or an hour passes.
static MxStatus fault_point(Comm *c) {
    if (!c->fault_kind || c->calls++ != c->fault_after) return MX_OK;
    if (c->fault_kind == 2) {
        fprintf(stderr, "myrmex: rank %d exits (MYRMEX_FAULT)\n", c->rank);
        _exit(3);
    }
    fprintf(stderr, "myrmex: rank %d stalls (MYRMEX_FAULT)\n", c->rank);
    for (int i = 0; i < 360000; i++) {
        usleep(10000);
        if (c->impl->wait(c, NULL) == MX_ERR_COMM) break; // the group was aborted meanwhile
    }
    return mx_fail(MX_ERR_COMM, "rank %d stalled (fault injection)", c->rank);
}

MxStatus comm_reserve(Comm *c, int max_rows, int stride) {
    if (max_rows < 1 || stride < 1)
        return mx_fail(MX_ERR_ARG, "comm buffers for %d rows of %d columns", max_rows, stride);
    return c->impl->reserve ? c->impl->reserve(c, max_rows, stride) : MX_OK;
}

bool comm_capturable(const Comm *c) { return c->impl->capturable; }

MxStatus comm_all_reduce(Comm *c, void *buf, size_t count, DType dtype, void *queue) {
    MxStatus st = fault_point(c);
    return st ? st : c->impl->all_reduce(c, buf, count, dtype, queue);
}

MxStatus comm_gather_vocab(Comm *c, const float *local, float *full, int rows, int vocab, int stride, void *queue) {
    MxStatus st = fault_point(c);
    return st ? st : c->impl->gather_vocab(c, local, full, rows, vocab, stride, queue);
}

MxStatus comm_wait(Comm *c, void *queue) { return c->impl->wait(c, queue); }

void comm_abort(Comm *c, const char *why) {
    if (c) c->impl->abort(c, why);
}

void comm_destroy(Comm *c) {
    if (c) c->impl->destroy(c);
}
