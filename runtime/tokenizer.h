// Text to token ids and back, from a Hugging Face tokenizer.json (BPE models of the
// byte-level family (GPT-2, Llama 3, Qwen2) and the SentencePiece family (Llama 2, Mistral)),
// tokenizer_config.json and generation_config.json. No Python, no regex engine.
//
// Components a tokenizer.json may name that myrmex does not implement are refused at load
// with MX_ERR_TOKENIZER_UNSUPPORTED naming the component, never silently ignored.
#ifndef MYRMEX_TOKENIZER_H
#define MYRMEX_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct Tokenizer Tokenizer;

// Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos/pad tokens,
// add_bos_token, add_eos_token) and DIR/generation_config.json (eos ids). model_vocab is the
// model's vocab_size: every token id must be below it (0 skips that check). On error returns
// MX_ERR_TOKENIZER_* (or MX_ERR_IO / MX_ERR_NOMEM), *out is NULL and nothing is leaked.
MxStatus tokenizer_load(const char *dir, int model_vocab, Tokenizer **out);
// The same from the text of a tokenizer.json alone (tests, fuzzing).
MxStatus tokenizer_load_json(const char *json, size_t len, int model_vocab, Tokenizer **out);
void tokenizer_free(Tokenizer *t);

// Encodes text[0..len) (any bytes; invalid UTF-8 is read as U+FFFD per maximal subpart, as
// Python's bytes.decode(errors="replace")) into a malloc'd array *ids of *n ids (release
// with mx_free). add_special adds bos/eos as the tokenizer's post-processor and
// tokenizer_config.json say (Hugging Face's add_special_tokens=True).
MxStatus tokenizer_encode(const Tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                          int *n);
// Decodes ids into a malloc'd NUL-terminated, valid UTF-8 string (invalid bytes become
// U+FFFD). skip_special drops special tokens (Hugging Face's skip_special_tokens=True).
// Errors: MX_ERR_TOKEN for an id out of range.
MxStatus tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, bool skip_special, char **text,
                          size_t *len);

int tokenizer_vocab_size(const Tokenizer *t);     // highest id + 1
int32_t tokenizer_bos(const Tokenizer *t);        // -1 when none
int32_t tokenizer_pad(const Tokenizer *t);        // tokenizer_config.json pad_token, -1 when none
int tokenizer_eos(const Tokenizer *t, const int32_t **ids); // eos ids (config + generation_config)
const char *tokenizer_token(const Tokenizer *t, int32_t id); // the vocabulary string, NULL if none
int32_t tokenizer_find(const Tokenizer *t, const char *token); // id of an exact token string, -1
bool tokenizer_is_special(const Tokenizer *t, int32_t id);

// Streaming detokenization: feed ids one at a time, get text that is always complete UTF-8;
// a partial character is carried to the next call. Produces exactly the text that
// tokenizer_decode gives for the whole sequence (same skip_special).
typedef struct Detokenizer Detokenizer;
MxStatus detokenizer_new(const Tokenizer *t, bool skip_special, Detokenizer **out);
// Appends id; *text points to the newly final text (NUL-terminated, valid until the next
// call), *len its length (may be 0).
MxStatus detokenizer_push(Detokenizer *d, int32_t id, const char **text, size_t *len);
// Ends the stream: any carried partial bytes come out as U+FFFD.
MxStatus detokenizer_finish(Detokenizer *d, const char **text, size_t *len);
void detokenizer_free(Detokenizer *d);

#endif
