// ops_cuda's sum and copy_2d: the device half of an all-reduce and a vocab gather between
// tensor-parallel ranks that share one GPU (loopback ranks; see runtime/comm_local.c).
#include "cuda_internal.cuh"

namespace {

struct SumPointers {
    const void *in[OPS_MAX_RANKS];
    void *out[OPS_MAX_RANKS];
};

template <typename T>
__device__ float load_as_f32(const void *p, size_t i) {
    return static_cast<float>(static_cast<const T *>(p)[i]);
}

// Grid-stride over elements: each thread reads element e of every input, adds them in rank
// order in f32 and writes the rounded sum to every output (so an output may be an input).
template <typename T>
__global__ void sum_kernel(SumPointers ptr, int n_in, int n_out, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < count; e += stride) {
        float y = 0.0f;
        for (int i = 0; i < n_in; i++) y += load_as_f32<T>(ptr.in[i], e);
        T v = static_cast<T>(y);
        for (int o = 0; o < n_out; o++) static_cast<T *>(ptr.out[o])[e] = v;
    }
}

} // namespace

int cuda_sum(const SumParams *p, CudaQueue *q) {
    if (!p || p->n_in < 1 || p->n_in > OPS_MAX_RANKS || p->n_out < 0 || p->n_out > OPS_MAX_RANKS) return OPS_ERR_ARG;
    if (!(p->dtype == DT_F32 || p->dtype == DT_BF16 || p->dtype == DT_F16)) return OPS_ERR_ARG;
    SumPointers ptr = {};
    for (int i = 0; i < p->n_in; i++) {
        if (!p->in[i]) return OPS_ERR_ARG;
        ptr.in[i] = p->in[i];
    }
    for (int o = 0; o < p->n_out; o++) {
        if (!p->out[o]) return OPS_ERR_ARG;
        ptr.out[o] = p->out[o];
    }
    if (p->count == 0 || p->n_out == 0) return OPS_OK;
    unsigned blocks = cuda_blocks(p->count, 256), cap = (unsigned)q->num_sms * 8;
    if (blocks > cap) blocks = cap;
    if (p->dtype == DT_F32) sum_kernel<float><<<blocks, 256, 0, q->stream>>>(ptr, p->n_in, p->n_out, p->count);
    else if (p->dtype == DT_BF16) sum_kernel<__nv_bfloat16><<<blocks, 256, 0, q->stream>>>(ptr, p->n_in, p->n_out, p->count);
    else sum_kernel<__half><<<blocks, 256, 0, q->stream>>>(ptr, p->n_in, p->n_out, p->count);
    return cuda_launch_status();
}

int cuda_copy_2d(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                 CudaQueue *q) {
    if (width == 0 || rows == 0) return OPS_OK;
    if (!dst || !src || (rows > 1 && (dst_pitch < width || src_pitch < width))) return OPS_ERR_ARG;
    cudaError_t e = cudaMemcpy2DAsync(dst, rows > 1 ? dst_pitch : width, src, rows > 1 ? src_pitch : width, width,
                                      rows, cudaMemcpyDeviceToDevice, q->stream);
    if (e != cudaSuccess) cudaGetLastError(); // not sticky: do not blame the next op's launch
    return e == cudaSuccess ? OPS_OK : OPS_ERR_DEVICE;
}
