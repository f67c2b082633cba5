// Chat templates: a conversation (system / user / assistant messages) rendered as the prompt
// text a chat model was trained on, for four built-in families:
//
//   llama-2  Llama-2-chat        <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]
//   llama-3  Llama-3-Instruct    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>...
//                                + <|start_header_id|>assistant<|end_header_id|>\n\n as generation prompt
//   mistral  Mistral-7B-Instruct-v0.1 / v0.2 (their template since 2024):
//                                <s> [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST]
//   chatml   ChatML (OpenHermes, Qwen, ...)
//                                <|im_start|>role\ncontent<|im_end|>\n ... + <|im_start|>assistant\n
//
// Each family reproduces byte for byte what Hugging Face transformers' apply_chat_template
// renders with that family's Jinja template (tests/fixtures/chat/*.jsonl, written by
// tests/make_chat_fixtures.py). The Jinja chat_template string of a model is NOT interpreted:
// it is only read to guess the family (chat_family_detect). A template that carries a
// family's markers but differs in detail (Llama 3.1's date preamble and tools, Mistral v0.3 /
// Nemo spacing, Qwen's default system prompt) is detected as that family and rendered as the
// family, not as its own template would; one without known markers (Gemma, ...) is
// CHAT_UNKNOWN and its family must be named.
//
// BOS: the llama-2, llama-3 and mistral renderings begin with the BOS token's text (<s> or
// <|begin_of_text|>), as their templates do. Encode the rendered text with
// tokenizer_encode(add_special = false), which reads special-token text as the token, so the
// BOS appears once; add_special = true would add a second one.
#ifndef MYRMEX_CHAT_TEMPLATE_H
#define MYRMEX_CHAT_TEMPLATE_H

#include <stdbool.h>

#include "status.h"
#include "tokenizer.h"

typedef enum ChatFamily {
    CHAT_UNKNOWN = 0, // chat_family_detect could not tell
    CHAT_LLAMA2,
    CHAT_LLAMA3,
    CHAT_MISTRAL,
    CHAT_CHATML,
    CHAT_FAMILY_COUNT
} ChatFamily;

// One message. role is "system", "user" or "assistant"; content is NUL-terminated UTF-8 (it is
// copied as bytes; nothing in it is interpreted, so text that looks like a special token, e.g.
// "<|im_end|>", stays in the output and is encoded as that token).
typedef struct ChatMessage {
    const char *role;
    const char *content;
} ChatMessage;

// "llama-2" / "llama2", "llama-3" / "llama3", "mistral", "chatml" (case-sensitive); -1 if none.
int chat_family_from_name(const char *name);
// The canonical name ("llama-2", ...); "unknown" for CHAT_UNKNOWN or out of range.
const char *chat_family_name(ChatFamily f);
// "llama-2, llama-3, mistral, chatml": for help text and error messages.
const char *chat_family_list(void);

// Guesses the family from a model's Jinja chat template (may be NULL) or, when there is none,
// from the tokenizer's tokens (tok may be NULL). Template markers, first match wins:
//   "<|start_header_id|>" -> llama-3;  "<|im_start|>" -> chatml;
//   "[INST]" with "<<SYS>>" -> llama-2;  "[INST]" -> mistral;  anything else -> CHAT_UNKNOWN.
// Without a template: a special token "<|start_header_id|>" -> llama-3, "<|im_start|>" ->
// chatml, "[INST]" -> mistral (v0.3's control token); a plain <s>/</s> vocabulary (Llama 2
// or Mistral v0.1) -> CHAT_UNKNOWN.
// A template that is present but unrecognised gives CHAT_UNKNOWN (the tokens are not asked).
ChatFamily chat_family_detect(const char *jinja_template, const Tokenizer *tok);

// Renders msgs[0..n) into a malloc'd NUL-terminated string *out (release with mx_free).
// add_generation_prompt appends the assistant header (llama-3, chatml); llama-2 and mistral
// prompts already end where the assistant answers, and their templates ignore it.
// Role rules (MX_ERR_ARG with a message naming the message index and the rule; *out NULL):
//   all: n >= 1; every role is system, user or assistant; no NULL strings.
//   llama-2, mistral: an optional first system message, then user/assistant alternating,
//     starting with user (at least one user message).
//   llama-3, chatml: any order, as their templates accept.
// Where a Jinja template renders something useless instead of failing, myrmex refuses:
// llama-2 drops a system message that stands where an assistant reply is due, and renders a
// lone system message as "" (mistral as "<s>"); llama-3 and chatml render any role name.
// Whitespace: llama-2 strips each turn (its <<SYS>> block included) and llama-3 each content
// (Python's str.strip(): Unicode whitespace); mistral and chatml keep content as is.
MxStatus chat_render(ChatFamily f, const ChatMessage *msgs, int n, bool add_generation_prompt, char **out);

// MX_OK if every special-token text f's rendering writes (e.g. <|im_start|>, <|im_end|> for
// chatml) is one token of tok: a special token, or a token whose text alone encodes as
// exactly that token (an added token not flagged special); a vocabulary piece that merely has
// that spelling but encodes otherwise does not count. Else MX_ERR_ARG naming the first missing.
MxStatus chat_check_tokenizer(ChatFamily f, const Tokenizer *tok);

// Reads a model directory's Jinja chat template: DIR/chat_template.jinja when present, else
// the "chat_template" of DIR/tokenizer_config.json (a string, or a list of {name, template}:
// the one named "default", else the first). *out is a malloc'd string (mx_free), or NULL when
// the directory has no template (which is not an error). Errors: MX_ERR_TOKENIZER_JSON
// (tokenizer_config.json is not JSON, chat_template has the wrong type), MX_ERR_IO, NOMEM.
MxStatus chat_template_load(const char *dir, char **out);

#endif
