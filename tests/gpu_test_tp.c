// Tensor parallelism on the CUDA backend, on one GPU. Skipped (77) without a CUDA device.
//
// - loopback: the engine tests of test_tp.c with tp 2 and 4 virtual ranks on one GPU (each
//   its own weight slice, KV pool and queue; the all-reduce and the logits gather run on
//   the device) against tp 1, within bf16 tolerance;
// - NCCL with one rank: a communicator is created non-blocking, and its all-reduce and
//   vocab gather leave a device buffer as they should, run directly and replayed from a
//   CUDA graph they were captured in (with one rank NCCL moves no data, so this checks the
//   capture's plumbing, not NCCL inside a graph: the next test does that);
// - NCCL with 2 and 4 ranks, one GPU each, where the machine has the GPUs: the engine
//   tests again (decode steps replayed from graphs that hold the collectives).
#define TP_DEVICE "cuda"
#define TP_COMM "loopback"
#define LOGPROB_TOL 0.25f // gpu_test_fixtures.c's bf16 logit tolerance
#define GAP_MIN 0.5f      // twice that: below it bf16 rounding may pick the other token
#define TP_GPU_MAIN
#include "test_tp.c"

#include "backend.h"
#include "comm.h"
#include "kernels.h"

// Rank 0 of one: buf[N] bf16 summed in place, and local[3, 10] f32 gathered into full.
static void nccl_one_rank_ops(Comm *c, void *buf, float *local, float *full, void *queue) {
    CHECK_STATUS(comm_all_reduce(c, buf, 1000, DT_BF16, queue), MX_OK);
    CHECK_STATUS(comm_gather_vocab(c, local, full, 3, 10, 10, queue), MX_OK);
}

static void test_nccl_one_rank(void) {
    if (!comm_nccl_available()) {
        fprintf(stderr, "(this build has no NCCL: skipped)\n");
        return;
    }
    Backend b;
    CHECK_STATUS(backend_open("cuda:0", &b), MX_OK);
    void *queue = NULL;
    CHECK_STATUS(backend_queue_create(&b, NULL, &queue), MX_OK);
    int device = 0;
    Comm *c = NULL;
    CHECK_STATUS(comm_nccl_create(1, &device, 30.0, &c), MX_OK);
    if (!c || !queue) return;
    CHECK(comm_capturable(c));
    CHECK_STATUS(comm_reserve(c, 3, 10), MX_OK);
    enum { N = 1000 };
    uint16_t host[N], back[N];
    float local[30], full_host[30];
    void *buf = b.ops->alloc(sizeof host);
    float *dl = b.ops->alloc(sizeof local), *df = b.ops->alloc(sizeof local);
    // Directly, then replayed from a graph twice, each time on new inputs.
    void *graph = NULL;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < N; i++) host[i] = f32_to_bf16((float)((i + pass) % 97) - 48.0f);
        for (int i = 0; i < 30; i++) local[i] = (float)(i * (pass + 1));
        CHECK(b.ops->upload(buf, host, sizeof host, queue) == OPS_OK);
        CHECK(b.ops->upload(dl, local, sizeof local, queue) == OPS_OK);
        CHECK(b.ops->sync(queue) == OPS_OK);
        if (pass == 0) {
            nccl_one_rank_ops(c, buf, dl, df, queue);
        } else {
            if (!graph) {
                CHECK(b.ops->capture_begin(queue) == OPS_OK);
                nccl_one_rank_ops(c, buf, dl, df, queue);
                CHECK(b.ops->capture_end(queue, &graph) == OPS_OK && graph);
                if (!graph) break;
            }
            CHECK(b.ops->graph_launch(graph, queue) == OPS_OK);
        }
        CHECK(b.ops->download(back, buf, sizeof back, queue) == OPS_OK);
        CHECK(b.ops->download(full_host, df, sizeof full_host, queue) == OPS_OK);
        CHECK_STATUS(comm_wait(c, queue), MX_OK);
        CHECK(memcmp(host, back, sizeof host) == 0);       // the sum over one rank is the buffer
        CHECK(memcmp(local, full_host, sizeof local) == 0); // and the gather a copy
    }
    // More rows than reserved: refused, and the group failed. As after any failure, the
    // graphs go before the communicator is aborted.
    CHECK_STATUS(comm_gather_vocab(c, dl, df, 4, 10, 10, queue), MX_ERR_COMM);
    if (graph) b.ops->graph_destroy(graph);
    CHECK_STATUS(comm_all_reduce(c, buf, 1000, DT_BF16, queue), MX_ERR_COMM);
    comm_abort(c, "test");
    b.ops->free(buf);
    b.ops->free(dl);
    b.ops->free(df);
    comm_destroy(c);
    b.ops->queue_destroy(queue);
}

// The engine tests over NCCL, a GPU per rank, for the tp this machine has GPUs for.
static void test_nccl_tp_equals_tp1(void) {
    int gpus = backend_cuda_device_count();
    if (!comm_nccl_available() || gpus < 2) {
        fprintf(stderr, "(NCCL and 2 GPUs needed, %d found: skipped)\n", gpus);
        return;
    }
    tp_comm = "nccl";
    tp_max = gpus >= 4 ? 4 : 2;
    test_tp_equals_tp1();
    tp_comm = TP_COMM;
    tp_max = 4;
}

int main(int argc, char **argv) {
    if (argc > 1) fixtures = argv[1];
    Backend b;
    if (backend_open("cuda", &b) != MX_OK) {
        fprintf(stderr, "no CUDA device: skipped (%s)\n", mx_last_error());
        return 77;
    }
    RUN(test_sharding);
    RUN(test_tp_equals_tp1);
    RUN(test_nccl_one_rank);
    RUN(test_nccl_tp_equals_tp1);
    return test_exit();
}
