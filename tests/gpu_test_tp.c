// Tensor parallelism on the CUDA backend, on one GPU. Skipped (77) without a CUDA device.
//
// - loopback: the engine tests of test_tp.c with tp 2 and 4 virtual ranks on one GPU (each
//   its own weight slice, KV pool and queue; the all-reduce and the logits gather run on
//   the device) against tp 1, within bf16 tolerance;
// - NCCL with one rank: a communicator is created non-blocking, and its all-reduce and
//   vocab gather leave a device buffer as they should.
#define TP_DEVICE "cuda"
#define TP_COMM "loopback"
#define LOGPROB_TOL 0.25f // gpu_test_fixtures.c's bf16 logit tolerance
#define GAP_MIN 0.5f      // twice that: below it bf16 rounding may pick the other token
#define TP_GPU_MAIN
#include "test_tp.c"

#include "backend.h"
#include "comm.h"
#include "kernels.h"

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
    enum { N = 1000 };
    uint16_t host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = f32_to_bf16((float)(i % 97) - 48.0f);
    void *buf = b.ops->alloc(sizeof host);
    CHECK(b.ops->upload(buf, host, sizeof host, queue) == OPS_OK);
    CHECK_STATUS(comm_all_reduce(c, buf, N, DT_BF16, queue), MX_OK);
    CHECK(b.ops->download(back, buf, sizeof back, queue) == OPS_OK);
    CHECK_STATUS(comm_wait(c, queue), MX_OK);
    CHECK(memcmp(host, back, sizeof host) == 0); // the sum over one rank is the buffer
    // Gather of one rank: [3, 10] f32 into full [3, 10].
    float local[30], full_host[30];
    for (int i = 0; i < 30; i++) local[i] = (float)i;
    float *dl = b.ops->alloc(sizeof local), *df = b.ops->alloc(sizeof local);
    CHECK(b.ops->upload(dl, local, sizeof local, queue) == OPS_OK);
    CHECK_STATUS(comm_gather_vocab(c, dl, df, 3, 10, 10, queue), MX_OK);
    CHECK(b.ops->download(full_host, df, sizeof full_host, queue) == OPS_OK);
    CHECK_STATUS(comm_wait(c, queue), MX_OK);
    CHECK(memcmp(local, full_host, sizeof local) == 0);
    b.ops->free(buf);
    b.ops->free(dl);
    b.ops->free(df);
    comm_destroy(c);
    b.ops->queue_destroy(queue);
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
    return test_exit();
}
