// Writing safetensors files: collect tensors, then write them in one pass.
//
//   StWriter w;
//   st_writer_init(&w);
//   st_writer_set_metadata(&w, "format", "pt");
//   st_writer_add(&w, "model.norm.weight", DT_F32, 1, (int64_t[]){64}, norm);      // bytes
//   st_writer_add_fill(&w, "lm_head.weight", DT_BF16, 2, shape, fill_random, &rng); // generated
//   MxStatus s = st_writer_write(&w, "out/model.safetensors");
//   st_writer_free(&w);
//
// The file is: u64 little-endian N | N bytes of JSON header, padded with spaces to a multiple
// of 8 | tensor data. Tensors appear in insertion order with contiguous data_offsets.
// Tensors from a fill callback are generated in chunks of at most ST_WRITE_CHUNK bytes, so a
// writer never holds more than one chunk of generated data, whatever the model size.
// The output is a pure function of the inputs: the same tensors give byte-identical files.
#ifndef MYRMEX_SAFETENSORS_WRITE_H
#define MYRMEX_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "../kernels/dtype.h"
#include "safetensors.h"
#include "status.h"

#define ST_WRITE_CHUNK (4u << 20) // bytes generated per fill call, at most

// Writes elements [first, first + count) of the tensor into dst (count * dtype_size bytes).
// Calls for one tensor come in order, first = 0 upward, so a callback may keep a running
// state (an RNG) in ctx. Returns MX_OK, or an error that aborts the write.
typedef MxStatus (*StFillFn)(void *ctx, void *dst, uint64_t first, uint64_t count);

typedef struct StWriterTensor {
    char *name;
    DType dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    uint64_t nbytes;
    const void *data; // the caller's bytes (must live until st_writer_write), or NULL
    StFillFn fill;    // used when data is NULL
    void *fill_ctx;
} StWriterTensor;

typedef struct StWriter {
    StWriterTensor *tensors; // insertion order
    int n_tensors, cap;
    char **meta;             // key, value, key, value, ...
    int n_meta;              // pairs
    uint64_t data_bytes;     // sum of nbytes
} StWriter;

void st_writer_init(StWriter *w);
void st_writer_free(StWriter *w);

// Adds a "__metadata__" string entry (e.g. "format": "pt"). A repeated key replaces the value.
// Errors: MX_ERR_ARG (invalid UTF-8), MX_ERR_NOMEM; the writer is unchanged on error.
MxStatus st_writer_set_metadata(StWriter *w, const char *key, const char *value);

// Adds a tensor whose bytes are data[0 .. product(shape) * dtype_size). The name is copied.
// Errors (the writer is unchanged): MX_ERR_ARG for an empty, duplicate, "__metadata__" or
// non-UTF-8 name, rank outside [0, ST_MAX_RANK], a negative dimension or a NULL data;
// MX_ERR_ST_SIZE_OVERFLOW when the byte size overflows; MX_ERR_NOMEM.
MxStatus st_writer_add(StWriter *w, const char *name, DType dtype, int rank, const int64_t *shape,
                       const void *data);
// As st_writer_add, with the bytes produced by fill(ctx, ...) while writing.
MxStatus st_writer_add_fill(StWriter *w, const char *name, DType dtype, int rank,
                            const int64_t *shape, StFillFn fill, void *ctx);

// Writes the file at path (created or truncated). On error, returns MX_ERR_IO (with path and
// the system's reason), MX_ERR_NOMEM or the fill callback's error, and removes the partial file.
MxStatus st_writer_write(const StWriter *w, const char *path);

// The header's exact size in bytes (after padding), so a caller can compute the file size
// (8 + header + data_bytes) before writing. Returns 0 on allocation failure.
uint64_t st_writer_header_bytes(const StWriter *w);

// "BF16", "F16", "F32": the safetensors name of a DType.
const char *st_writer_dtype_name(DType t);

#endif
