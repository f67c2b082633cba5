// Status codes: every failure the runtime can report has one name, and a detail message.
//
// Functions return MxStatus. On failure they call mx_fail(code, fmt, ...), which records a
// human-readable detail for this thread (mx_last_error()) and returns the code, so a
// failing path reads `return mx_fail(MX_ERR_ST_HEADER_JSON, "%s: ...", path);`.
// Recoverable failures leave no partial state; broken invariants use MX_ASSERT and abort.
#ifndef MYRMEX_STATUS_H
#define MYRMEX_STATUS_H

#include <stdio.h>
#include <stdlib.h>

// X(name, text): one line per failure mode.
#define MX_STATUS_LIST(X)                                                                     \
    X(MX_OK, "ok")                                                                            \
    X(MX_ERR_NOMEM, "out of memory")                                                          \
    X(MX_ERR_IO, "file could not be read or written")                                        \
    X(MX_ERR_ARG, "invalid argument")                                                         \
    X(MX_ERR_OPS, "backend op failed")                                                        \
    /* safetensors files */                                                                   \
    X(MX_ERR_ST_TOO_SMALL, "safetensors file shorter than its 8-byte header length")        \
    X(MX_ERR_ST_HEADER_EMPTY, "safetensors header length is 0")                              \
    X(MX_ERR_ST_HEADER_TOO_LARGE, "safetensors header length over 100 MB")                   \
    X(MX_ERR_ST_HEADER_PAST_EOF, "safetensors header extends past the end of the file")      \
    X(MX_ERR_ST_HEADER_UTF8, "safetensors header is not valid UTF-8")                        \
    X(MX_ERR_ST_HEADER_JSON, "safetensors header is not valid JSON")                         \
    X(MX_ERR_ST_HEADER_NOT_OBJECT, "safetensors header is not a JSON object")                \
    X(MX_ERR_ST_DUPLICATE_TENSOR, "safetensors tensor name appears twice")                   \
    X(MX_ERR_ST_DUPLICATE_KEY, "safetensors entry has a duplicate key")                      \
    X(MX_ERR_ST_METADATA, "safetensors __metadata__ is not an object of strings")            \
    X(MX_ERR_ST_ENTRY_KEYS, "safetensors entry must have exactly dtype, shape, data_offsets") \
    X(MX_ERR_ST_DTYPE, "safetensors tensor has an unknown dtype")                            \
    X(MX_ERR_ST_SHAPE, "safetensors shape is not a short list of non-negative integers")     \
    X(MX_ERR_ST_OFFSETS, "safetensors data_offsets is not two non-negative integers")        \
    X(MX_ERR_ST_SIZE_OVERFLOW, "safetensors tensor size overflows")                          \
    X(MX_ERR_ST_SIZE_MISMATCH, "safetensors data_offsets span differs from shape x dtype")   \
    X(MX_ERR_ST_LAYOUT, "safetensors tensor data has a gap or an overlap")                   \
    X(MX_ERR_ST_FILE_SIZE, "safetensors data does not end exactly at the end of the file")  \
    /* sharded index */                                                                       \
    X(MX_ERR_INDEX_JSON, "model.safetensors.index.json is malformed")                        \
    X(MX_ERR_INDEX_SHARD_NAME, "index names a shard that is not a plain file name")          \
    X(MX_ERR_INDEX_MISSING_SHARD, "index names a shard file that does not exist")            \
    X(MX_ERR_INDEX_DUPLICATE_TENSOR, "index lists a tensor twice")                           \
    X(MX_ERR_INDEX_TENSOR_NOT_IN_SHARD, "index maps a tensor to a shard that lacks it")      \
    X(MX_ERR_NO_WEIGHTS, "no model.safetensors or model.safetensors.index.json")            \
    /* config.json */                                                                         \
    X(MX_ERR_CONFIG_JSON, "config.json is missing or not a JSON object")                     \
    X(MX_ERR_CONFIG_ARCH, "config.json architecture is not supported")                       \
    X(MX_ERR_CONFIG_FIELD, "config.json field is missing or has the wrong type")             \
    X(MX_ERR_CONFIG_HEADS, "config.json num_attention_heads must be > 0")                    \
    X(MX_ERR_CONFIG_KV_HEADS, "config.json num_key_value_heads must be > 0 and divide heads") \
    X(MX_ERR_CONFIG_HIDDEN_HEADS, "config.json hidden_size is not divisible by heads")       \
    X(MX_ERR_CONFIG_EPS, "config.json rms_norm_eps must be finite and > 0")                  \
    X(MX_ERR_CONFIG_ROPE_THETA, "config.json rope_theta must be finite and > 0")             \
    X(MX_ERR_CONFIG_ROPE_SCALING, "config.json rope_scaling is unsupported or invalid")      \
    X(MX_ERR_CONFIG_SIZE, "config.json size field out of range")                             \
    X(MX_ERR_CONFIG_KV_OVERFLOW, "KV-cache size overflows")                                  \
    /* tensors against the config */                                                          \
    X(MX_ERR_TENSOR_MISSING, "a tensor the architecture needs is missing")                   \
    X(MX_ERR_TENSOR_SHAPE, "a tensor's shape differs from what config.json implies")         \
    X(MX_ERR_TENSOR_DTYPE, "a tensor's dtype is not bf16, f16 or f32")                       \
    X(MX_ERR_VOCAB_MISMATCH, "vocab_size differs from the embedding's rows")                 \
    X(MX_ERR_LAYER_MISMATCH, "num_hidden_layers differs from the layers in the weights")     \
    /* tokenizer.json, tokenizer_config.json, generation_config.json */                      \
    X(MX_ERR_TOKENIZER_JSON, "tokenizer file is missing or malformed")                       \
    X(MX_ERR_TOKENIZER_UNSUPPORTED, "tokenizer component is not supported")                  \
    X(MX_ERR_TOKENIZER_VOCAB, "tokenizer vocab has a duplicate or out-of-range id")          \
    X(MX_ERR_TOKENIZER_ADDED, "tokenizer added/special token id is invalid")                 \
    X(MX_ERR_TOKENIZER_MERGES, "tokenizer merge refers to a token not in the vocab")         \
    X(MX_ERR_TOKENIZER_BYTE_TOKEN, "tokenizer <0xNN> byte token is malformed")               \
    /* runtime */                                                                             \
    X(MX_ERR_KV_FULL, "not enough free KV-cache blocks")                                     \
    X(MX_ERR_CONTEXT, "sequence longer than the model's context")                            \
    X(MX_ERR_TOKEN, "token id out of range")                                                 \
    X(MX_ERR_DEVICE, "no usable device of the kind asked for")                               \
    X(MX_ERR_KV_TOO_SMALL, "request needs more KV-cache blocks than the whole pool has")       \
    /* tensor parallelism */                                                                  \
    X(MX_ERR_TP_SPLIT, "the model cannot be split over this many tensor-parallel ranks")      \
    X(MX_ERR_COMM, "communication between ranks failed or timed out")                        \
    X(MX_ERR_RANK_MISMATCH, "ranks disagree on the model's config or weights")                 \
    X(MX_FOLLOWER_DONE, "this process mirrored process 0's steps until it finished (mpirun)")

typedef enum MxStatus {
#define MX_STATUS_ENUM(name, text) name,
    MX_STATUS_LIST(MX_STATUS_ENUM)
#undef MX_STATUS_ENUM
    MX_STATUS_COUNT
} MxStatus;

// "MX_ERR_ST_LAYOUT" for a code; "?" when out of range.
const char *mx_status_name(MxStatus s);
// The one-line description of a code.
const char *mx_status_text(MxStatus s);

// Records a detail message for this thread and returns code. fmt may be NULL.
MxStatus mx_fail(MxStatus code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The last failure's detail on this thread: "<text>: <detail>", or "" when none.
const char *mx_last_error(void);
// Only its <detail> part (the whole message when it has no <text> prefix): for passing a
// failure on under another mx_fail without repeating the description.
const char *mx_last_detail(void);
// The code of the last failure recorded on this thread.
MxStatus mx_last_status(void);

// A broken invariant: print where and abort. Not for bad input.
#define MX_ASSERT(cond)                                                                       \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
