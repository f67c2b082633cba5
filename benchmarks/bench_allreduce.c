// All-reduce latency per message size between tensor-parallel ranks on this machine's GPUs:
//   loopback: 2 and 4 virtual ranks on one GPU (host barrier + the device sum kernel);
//   nccl:     one rank per GPU, for every rank count the GPUs allow (1 on a one-GPU box).
// bf16 messages from one hidden vector (8 KiB: one token of Llama-2-13B) to 64 MiB; each
// figure is the median over 50 timed calls after 5 warm-up calls, per call on rank 0's
// clock, and bus bandwidth as nccl-tests defines it: 2 (n - 1) / n x bytes / time.
//
//   bench_allreduce [--json FILE]
// GPU only; exits 77 without a device.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "comm.h"

enum { WARMUP = 5, ITERS = 50, MAX_RANKS = 8 };

typedef struct Rank {
    Comm *comm;
    Backend backend;
    void *queue, *buf;
    size_t count;
    double seconds[ITERS];
    MxStatus st;
} Rank;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *rank_main(void *arg) {
    Rank *r = arg;
    r->st = backend_bind_thread(&r->backend);
    for (int i = 0; i < WARMUP + ITERS && !r->st; i++) {
        double t0 = now_s();
        r->st = comm_all_reduce(r->comm, r->buf, r->count, DT_BF16, r->queue);
        if (!r->st) r->st = comm_wait(r->comm, r->queue);
        if (i >= WARMUP) r->seconds[i - WARMUP] = now_s() - t0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median seconds per all-reduce of `count` bf16 over n ranks, or a negative on failure.
static double measure(const char *kind, int n, size_t count) {
    Rank ranks[MAX_RANKS];
    Comm *comms[MAX_RANKS] = {0};
    memset(ranks, 0, sizeof ranks);
    int devices[MAX_RANKS];
    for (int r = 0; r < n; r++) devices[r] = strcmp(kind, "nccl") == 0 ? r : 0;
    MxStatus st = MX_OK;
    for (int r = 0; r < n && !st; r++) {
        char name[16];
        snprintf(name, sizeof name, "cuda:%d", devices[r]);
        if (!(st = backend_open(name, &ranks[r].backend)) && !(st = backend_queue_create(&ranks[r].backend, NULL, &ranks[r].queue))) {
            ranks[r].count = count;
            ranks[r].buf = ranks[r].backend.ops->alloc(count * 2);
            if (!ranks[r].buf || ranks[r].backend.ops->fill(ranks[r].buf, count, DT_BF16, (uint64_t)r, -1, 1, ranks[r].queue))
                st = mx_fail(MX_ERR_NOMEM, "message buffer");
            else ranks[r].backend.ops->sync(ranks[r].queue);
        }
    }
    if (!st) st = strcmp(kind, "nccl") == 0 ? comm_nccl_create(n, devices, 30.0, comms)
                                            : comm_local_create(n, ranks[0].backend.ops, 30.0, comms);
    double median = -1;
    if (!st) {
        pthread_t threads[MAX_RANKS];
        for (int r = 0; r < n; r++) {
            ranks[r].comm = comms[r];
            pthread_create(&threads[r], NULL, rank_main, &ranks[r]);
        }
        for (int r = 0; r < n; r++) pthread_join(threads[r], NULL);
        for (int r = 0; r < n; r++)
            if (ranks[r].st) st = ranks[r].st;
        if (!st) {
            qsort(ranks[0].seconds, ITERS, sizeof(double), cmp_double);
            median = ranks[0].seconds[ITERS / 2];
        }
    }
    if (st) fprintf(stderr, "bench_allreduce: %s x%d: %s\n", kind, n, mx_last_error());
    for (int r = 0; r < n; r++) {
        comm_destroy(comms[r]);
        if (ranks[r].buf) ranks[r].backend.ops->free(ranks[r].buf);
        if (ranks[r].queue) ranks[r].backend.ops->queue_destroy(ranks[r].queue);
    }
    return median;
}

int main(int argc, char **argv) {
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else return fprintf(stderr, "usage: bench_allreduce [--json FILE]\n"), 2;
    }
    int gpus = backend_cuda_device_count();
    if (gpus == 0) {
        fprintf(stderr, "bench_allreduce: skipped: no CUDA device\n");
        return 77;
    }
    FILE *out = json ? fopen(json, "w") : NULL;
    if (out) fprintf(out, "[\n");
    printf("%-9s %5s %12s %12s %10s\n", "comm", "ranks", "bytes", "median_us", "bus_GB/s");
    int first = 1;
    const size_t counts[] = {4096, 65536, 1 << 20, 8 << 20, 32 << 20}; // bf16 elements: 8 KiB .. 64 MiB
    struct { const char *kind; int n; } runs[] = {{"loopback", 2}, {"loopback", 4}, {"nccl", 1}, {"nccl", 2}, {"nccl", 4}, {"nccl", 8}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        if (strcmp(runs[k].kind, "nccl") == 0 && (!comm_nccl_available() || runs[k].n > gpus)) continue;
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            double s = measure(runs[k].kind, runs[k].n, counts[c]);
            if (s < 0) continue;
            double bytes = (double)counts[c] * 2, n = runs[k].n;
            double bus = n > 1 ? 2.0 * (n - 1) / n * bytes / s / 1e9 : bytes / s / 1e9;
            printf("%-9s %5d %12.0f %12.1f %10.1f\n", runs[k].kind, runs[k].n, bytes, s * 1e6, bus);
            if (out) fprintf(out, "%s  {\"comm\": \"%s\", \"ranks\": %d, \"bytes\": %.0f, \"median_us\": %.2f, \"bus_gbs\": %.2f}",
                             first ? "" : ",\n", runs[k].kind, runs[k].n, bytes, s * 1e6, bus);
            first = 0;
        }
    }
    if (out) {
        fprintf(out, "\n]\n");
        fclose(out);
    }
    return 0;
}
