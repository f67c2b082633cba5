// Strict helpers on top of cJSON for untrusted files (config.json, safetensors headers,
// index files): whole-file reads, 64-bit integers that cJSON's valueint would saturate,
// duplicate-key detection.
#ifndef MYRMEX_JSON_UTIL_H
#define MYRMEX_JSON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "status.h"

#define JSON_MAX_SAFE_INT 9007199254740992.0 // 2^53: larger doubles are not exact integers

// Routes cJSON's allocations through mx_malloc/mx_free (idempotent, thread-safe).
void json_init(void);

// Reads a whole file into a NUL-terminated buffer (*len excludes the NUL). max_bytes caps
// the size. Errors: MX_ERR_IO (missing, unreadable, larger than max_bytes), MX_ERR_NOMEM.
MxStatus json_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

// Parses text[0..len) (no NUL terminator needed) into *out. Returns 0, or -1 if it is not
// one JSON value with optional trailing whitespace, or cJSON ran out of memory.
int json_parse(const char *text, size_t len, cJSON **out);

// 1 if text[0..n) is exactly one JSON value (RFC 8259) with optional surrounding
// whitespace, nested at most 64 deep. Stricter than cJSON, which accepts NUL and control
// bytes as whitespace, raw control bytes in strings, "01", "1." and "\u0000". Text that
// passes is always accepted by cJSON, so a later cJSON failure means out of memory.
int json_strict_ok(const char *text, size_t n);

// Parses text[0..len) that has passed utf8_valid and json_strict_ok; the only
// failure left is MX_ERR_NOMEM (`what` names the file in the detail).
MxStatus json_parse_checked(const char *text, size_t len, const char *what, cJSON **root);

// 1 if item is a number that is an exact integer in [0, 2^53]; stores it in *out.
int json_get_u53(const cJSON *item, uint64_t *out);
// 1 if item is a number that is an exact integer in [INT_MIN, INT_MAX]; stores it.
int json_get_int(const cJSON *item, int *out);

// 1 if object has two members with the same key (checked on the raw names, byte for byte).
// Returns -1 on allocation failure.
int json_has_duplicate_keys(const cJSON *object);

#endif
