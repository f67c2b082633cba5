// Parsing tokenizer.json's pipeline components (normalizer, pre_tokenizer, decoder,
// post_processor) into a Tokenizer, and the JSON helpers the tokenizer loader shares.
// Internal to tokenizer_load.c and tokenizer_components.c.
#ifndef MYRMEX_TOKENIZER_COMPONENTS_H
#define MYRMEX_TOKENIZER_COMPONENTS_H

#include <cjson/cJSON.h>

#include "tokenizer_internal.h"

// Member `key` of o, NULL when absent or JSON null.
const cJSON *tj_member(const cJSON *o, const char *key);
// Printable ASCII of s in buf (truncated), for messages that must not echo raw bytes.
const char *tj_safe(const char *s, char *buf, size_t size);
// o must be an object without duplicate keys (MX_ERR_TOKENIZER_JSON); with type != NULL it
// must also have a string "type", stored there. `what` names o in messages.
MxStatus tj_object(const cJSON *o, const char *what, const char **type);
// A boolean member, dflt when absent.
MxStatus tj_bool(const cJSON *o, const char *key, bool dflt, bool *out);
// A required string member, mx_strdup'd into *out.
MxStatus tj_dup_string(const cJSON *o, const char *key, char **out, size_t *len);

// Each takes the member (NULL when absent or null) and fills its part of t; unknown or
// unsupported settings give MX_ERR_TOKENIZER_UNSUPPORTED naming them. tokparse_post_processor
// needs the token table (special token ids are checked against it).
MxStatus tokparse_normalizer(Tokenizer *t, const cJSON *n);
MxStatus tokparse_pre_tokenizer(Tokenizer *t, const cJSON *p);
MxStatus tokparse_decoder(Tokenizer *t, const cJSON *d);
MxStatus tokparse_post_processor(Tokenizer *t, const cJSON *p);

bool tokparse_has_byte_fallback(const Tokenizer *t);
// Frees what the parse_* functions allocated (safe on a partly built tokenizer).
void tokparse_free(Tokenizer *t);

#endif
