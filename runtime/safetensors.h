// Reading safetensors files, single or sharded, with every header check of RELIABILITY.md.
//
// A safetensors file is: u64 little-endian N | N bytes of JSON header | tensor data.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end)} relative to
// the start of the data, plus an optional "__metadata__" object of strings.
// Files are mmap'd read-only; tensor data pointers point into the mapping.
#ifndef MYRMEX_SAFETENSORS_H
#define MYRMEX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/dtype.h"
#include "status.h"

#define ST_MAX_RANK 8
#define ST_MAX_HEADER (100u * 1000u * 1000u) // bytes

// Every dtype the format defines. Only F32, F16 and BF16 can hold model weights.
typedef enum StDType {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_I64, ST_U64, ST_F64, ST_DTYPE_COUNT
} StDType;

typedef struct StTensor {
    char *name;
    StDType dtype;
    int rank;
    int64_t shape[ST_MAX_RANK];
    uint64_t nbytes;  // = product(shape) * element size
    const void *data; // into the mapping (or the caller's buffer for st_parse)
} StTensor;

typedef struct StFile {
    char *path;        // NULL for st_parse
    void *map;         // mmap'd file, or NULL for st_parse
    size_t map_size;
    StTensor *tensors; // sorted by name
    int n_tensors;
} StFile;

// "BF16" -> ST_BF16; returns -1 for an unknown name.
int st_dtype_from_name(const char *name);
const char *st_dtype_name(StDType t);
size_t st_dtype_size(StDType t);
// ST_F32/F16/BF16 -> DType; returns -1 for dtypes that cannot hold weights.
int st_dtype_to_dtype(StDType t);

// Validates and indexes a whole file held in buf[0..size) (the buffer must outlive *out).
// On error, returns the specific MX_ERR_ST_* code, *out is zeroed and nothing is leaked.
MxStatus st_parse(const uint8_t *buf, size_t size, StFile *out);
// Maps path and parses it as st_parse does.
MxStatus st_open(const char *path, StFile *out);
void st_close(StFile *f);
// Binary search by name; NULL if absent.
const StTensor *st_find(const StFile *f, const char *name);

// All tensors of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json (whose "weight_map" names a shard for every tensor).
typedef struct TensorSet {
    StFile *files;
    int n_files;
} TensorSet;

// On error, returns MX_ERR_NO_WEIGHTS, MX_ERR_INDEX_* or MX_ERR_ST_* and leaks nothing.
MxStatus tensor_set_open(const char *dir, TensorSet *out);
void tensor_set_close(TensorSet *s);
const StTensor *tensor_set_find(const TensorSet *s, const char *name);
// Total tensor count and bytes over all files.
int tensor_set_count(const TensorSet *s);
uint64_t tensor_set_bytes(const TensorSet *s);

#endif
