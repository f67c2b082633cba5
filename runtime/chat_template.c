// Built-in chat templates (see chat_template.h): each family's Jinja template rewritten as a
// few lines of C, checked byte for byte against transformers by tests/test_chat_template.c.
#include "chat_template.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "json_util.h"
#include "utf8.h"

#define CHAT_MAX_TEMPLATE_BYTES (16u << 20) // tokenizer_config.json / chat_template.jinja cap

// ---------------------------------------------------------------------------- names

static const char *const family_names[CHAT_FAMILY_COUNT] = {"unknown", "llama-2", "llama-3", "mistral", "chatml"};

int chat_family_from_name(const char *name) {
    if (!name) return -1;
    for (int f = CHAT_LLAMA2; f < CHAT_FAMILY_COUNT; f++)
        if (strcmp(name, family_names[f]) == 0) return f;
    if (strcmp(name, "llama2") == 0) return CHAT_LLAMA2;
    if (strcmp(name, "llama3") == 0) return CHAT_LLAMA3;
    return -1;
}

const char *chat_family_name(ChatFamily f) {
    return f > CHAT_UNKNOWN && f < CHAT_FAMILY_COUNT ? family_names[f] : family_names[CHAT_UNKNOWN];
}

const char *chat_family_list(void) { return "llama-2, llama-3, mistral, chatml"; }

// ---------------------------------------------------------------------------- detection

// Only special tokens count: a trained vocabulary may hold "[INST]" as an ordinary piece.
static bool has_special(const Tokenizer *tok, const char *s) {
    int32_t id = tok ? tokenizer_find(tok, s) : -1;
    return id >= 0 && tokenizer_is_special(tok, id);
}

ChatFamily chat_family_detect(const char *jinja, const Tokenizer *tok) {
    if (jinja) {
        if (strstr(jinja, "<|start_header_id|>")) return CHAT_LLAMA3;
        if (strstr(jinja, "<|im_start|>")) return CHAT_CHATML;
        if (strstr(jinja, "[INST]")) return strstr(jinja, "<<SYS>>") ? CHAT_LLAMA2 : CHAT_MISTRAL;
        return CHAT_UNKNOWN;
    }
    if (has_special(tok, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (has_special(tok, "<|im_start|>")) return CHAT_CHATML;
    if (has_special(tok, "[INST]")) return CHAT_MISTRAL;
    return CHAT_UNKNOWN;
}

// The special-token texts each family writes; they must encode as single tokens.
static const char *const llama2_tokens[] = {"<s>", "</s>", NULL};
static const char *const llama3_tokens[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                            "<|eot_id|>", NULL};
static const char *const chatml_tokens[] = {"<|im_start|>", "<|im_end|>", NULL};

static const char *const *family_tokens(ChatFamily f) {
    switch (f) {
    case CHAT_LLAMA2:
    case CHAT_MISTRAL: return llama2_tokens;
    case CHAT_LLAMA3: return llama3_tokens;
    case CHAT_CHATML: return chatml_tokens;
    default: return NULL;
    }
}

// A special token, or one that is not flagged special (an added token in some ChatML
// fine-tunes) whose text alone encodes as exactly that token.
static MxStatus is_one_token(const Tokenizer *tok, const char *s, bool *yes) {
    int32_t id = tokenizer_find(tok, s);
    *yes = id >= 0 && tokenizer_is_special(tok, id);
    if (id < 0 || *yes) return MX_OK;
    int32_t *ids = NULL;
    int n = 0;
    MxStatus st = tokenizer_encode(tok, s, strlen(s), false, &ids, &n);
    *yes = st == MX_OK && n == 1 && ids[0] == id;
    mx_free(ids);
    return st;
}

MxStatus chat_check_tokenizer(ChatFamily f, const Tokenizer *tok) {
    const char *const *need = family_tokens(f);
    if (!need || !tok) return mx_fail(MX_ERR_ARG, "chat_check_tokenizer: no family or no tokenizer");
    for (; *need; need++) {
        bool yes = false;
        MxStatus st = is_one_token(tok, *need, &yes);
        if (st != MX_OK) return st;
        if (!yes)
            return mx_fail(MX_ERR_ARG, "chat template %s writes %s, but the tokenizer has no such token",
                           chat_family_name(f), *need);
    }
    return MX_OK;
}

// ---------------------------------------------------------------------------- a growing string

typedef struct StrBuf {
    char *s;
    size_t len, cap;
    bool oom;
} StrBuf;

static void sb_put(StrBuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = mx_realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_puts(StrBuf *b, const char *s) { sb_put(b, s, strlen(s)); }

// Python's str.isspace(), which str.strip() and Jinja's trim filter strip.
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Appends s[0..n) without leading and trailing Python whitespace.
static void sb_put_stripped(StrBuf *b, const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t start = 0, end = 0; // end: one past the last non-space character
    bool seen = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(u + i, n - i, &cp);
        // utf8_decode maps invalid bytes to U+FFFD, which is not a space: they are kept.
        if (!py_space(cp)) {
            if (!seen) start = i;
            seen = true;
            end = i + k;
        }
        i += k;
    }
    if (seen) sb_put(b, s + start, end - start);
}

// ---------------------------------------------------------------------------- role checks

typedef enum Role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } Role;

static MxStatus read_roles(ChatFamily f, const ChatMessage *msgs, int n, Role *roles) {
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content) return mx_fail(MX_ERR_ARG, "chat message %d: role or content is NULL", i);
        if (strcmp(r, "system") == 0) roles[i] = ROLE_SYSTEM;
        else if (strcmp(r, "user") == 0) roles[i] = ROLE_USER;
        else if (strcmp(r, "assistant") == 0) roles[i] = ROLE_ASSISTANT;
        else
            return mx_fail(MX_ERR_ARG, "chat message %d: unknown role '%s' (chat template %s takes system, user, assistant)",
                           i, r, chat_family_name(f));
    }
    return MX_OK;
}

// llama-2 and mistral: [system] user assistant user ... ; returns the index after the system.
static MxStatus check_alternating(ChatFamily f, const Role *roles, int n, int *first) {
    *first = roles[0] == ROLE_SYSTEM ? 1 : 0;
    if (*first == n) return mx_fail(MX_ERR_ARG, "chat template %s needs a user message after the system message", chat_family_name(f));
    for (int i = *first; i < n; i++) {
        Role want = (i - *first) % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT;
        if (roles[i] != want)
            return mx_fail(MX_ERR_ARG,
                           "chat message %d is %s, expected %s: chat template %s takes an optional first system "
                           "message, then user and assistant messages alternating, starting with user",
                           i, roles[i] == ROLE_SYSTEM ? "system" : roles[i] == ROLE_USER ? "user" : "assistant",
                           want == ROLE_USER ? "user" : "assistant", chat_family_name(f));
    }
    return MX_OK;
}

// ---------------------------------------------------------------------------- families

// Llama-2-chat: the system prompt sits inside the first [INST]; each turn is .strip()'d as a
// whole, the <<SYS>> block included (so an empty first user message eats its "\n\n").
static void render_llama2(StrBuf *b, const ChatMessage *m, const Role *roles, int first, int n) {
    StrBuf turn = {0};
    for (int i = first; i < n; i++) {
        turn.len = 0;
        if (i == first && first == 1) {
            sb_puts(&turn, "<<SYS>>\n");
            sb_puts(&turn, m[0].content);
            sb_puts(&turn, "\n<</SYS>>\n\n");
        }
        sb_puts(&turn, m[i].content);
        if (turn.oom) {
            b->oom = true;
            break;
        }
        bool user = roles[i] == ROLE_USER;
        sb_puts(b, user ? "<s>[INST] " : " ");
        sb_put_stripped(b, turn.s, turn.len);
        sb_puts(b, user ? " [/INST]" : " </s>");
    }
    mx_free(turn.s);
}

// Mistral-7B-Instruct-v0.1/v0.2: the system prompt is prepended to the first user message.
static void render_mistral(StrBuf *b, const ChatMessage *m, const Role *roles, int first, int n) {
    sb_puts(b, "<s>");
    for (int i = first; i < n; i++) {
        if (roles[i] == ROLE_USER) {
            sb_puts(b, " [INST] ");
            if (i == first && first == 1) {
                sb_puts(b, m[0].content);
                sb_puts(b, "\n\n");
            }
            sb_puts(b, m[i].content);
            sb_puts(b, " [/INST]");
        } else {
            sb_puts(b, " ");
            sb_puts(b, m[i].content);
            sb_puts(b, "</s>");
        }
    }
}

// Llama-3-Instruct: a header per message, content trimmed, BOS before the first.
static void render_llama3(StrBuf *b, const ChatMessage *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        if (i == 0) sb_puts(b, "<|begin_of_text|>");
        sb_puts(b, "<|start_header_id|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "<|end_header_id|>\n\n");
        sb_put_stripped(b, m[i].content, strlen(m[i].content));
        sb_puts(b, "<|eot_id|>");
    }
    if (gen) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_chatml(StrBuf *b, const ChatMessage *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "\n");
        sb_puts(b, m[i].content);
        sb_puts(b, "<|im_end|>\n");
    }
    if (gen) sb_puts(b, "<|im_start|>assistant\n");
}

MxStatus chat_render(ChatFamily f, const ChatMessage *msgs, int n, bool add_generation_prompt, char **out) {
    *out = NULL;
    if (f <= CHAT_UNKNOWN || f >= CHAT_FAMILY_COUNT) return mx_fail(MX_ERR_ARG, "chat_render: unknown chat family %d", (int)f);
    if (n < 1 || !msgs) return mx_fail(MX_ERR_ARG, "chat_render: no messages");
    Role *roles = mx_malloc((size_t)n * sizeof *roles);
    if (!roles) return mx_fail(MX_ERR_NOMEM, "chat_render roles");
    MxStatus st = read_roles(f, msgs, n, roles);
    int first = 0;
    if (st == MX_OK && (f == CHAT_LLAMA2 || f == CHAT_MISTRAL)) st = check_alternating(f, roles, n, &first);
    StrBuf b = {0};
    if (st == MX_OK) {
        sb_put(&b, "", 0); // an empty result is still a string
        switch (f) {
        case CHAT_LLAMA2: render_llama2(&b, msgs, roles, first, n); break;
        case CHAT_MISTRAL: render_mistral(&b, msgs, roles, first, n); break;
        case CHAT_LLAMA3: render_llama3(&b, msgs, n, add_generation_prompt); break;
        default: render_chatml(&b, msgs, n, add_generation_prompt); break;
        }
        if (b.oom) st = mx_fail(MX_ERR_NOMEM, "chat_render output");
    }
    mx_free(roles);
    if (st != MX_OK) {
        mx_free(b.s);
        return st;
    }
    *out = b.s;
    return MX_OK;
}

// ---------------------------------------------------------------------------- template files

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static MxStatus template_from_config(const char *path, char **out) {
    char *text = NULL;
    size_t len = 0;
    MxStatus st = json_read_file(path, CHAT_MAX_TEMPLATE_BYTES, &text, &len);
    if (st) return st;
    cJSON *root = NULL;
    if (!utf8_valid((const uint8_t *)text, len) || !json_strict_ok(text, len)) st = mx_fail(MX_ERR_TOKENIZER_JSON, "%s is not valid JSON", path);
    else st = json_parse_checked(text, len, path, &root);
    mx_free(text);
    if (st) return st;
    const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
    const char *found = NULL;
    if (cJSON_IsString(t)) {
        found = t->valuestring;
    } else if (cJSON_IsArray(t)) { // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
        const cJSON *e;
        cJSON_ArrayForEach(e, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(tpl)) continue;
            if (!found) found = tpl->valuestring;
            if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0) {
                found = tpl->valuestring;
                break;
            }
        }
        if (!found) st = mx_fail(MX_ERR_TOKENIZER_JSON, "%s: chat_template list has no {name, template} entry", path);
    } else if (t && !cJSON_IsNull(t)) {
        st = mx_fail(MX_ERR_TOKENIZER_JSON, "%s: chat_template is neither a string nor a list", path);
    } else if (!cJSON_IsObject(root)) {
        st = mx_fail(MX_ERR_TOKENIZER_JSON, "%s is not a JSON object", path);
    }
    if (st == MX_OK && found) {
        *out = mx_strdup(found);
        if (!*out) st = mx_fail(MX_ERR_NOMEM, "chat template");
    }
    cJSON_Delete(root);
    return st;
}

MxStatus chat_template_load(const char *dir, char **out) {
    *out = NULL;
    size_t n = strlen(dir) + sizeof "/tokenizer_config.json";
    char *path = mx_malloc(n);
    if (!path) return mx_fail(MX_ERR_NOMEM, "path");
    MxStatus st = MX_OK;
    snprintf(path, n, "%s/chat_template.jinja", dir);
    if (file_exists(path)) {
        size_t len = 0;
        st = json_read_file(path, CHAT_MAX_TEMPLATE_BYTES, out, &len); // a plain read despite the name
    } else {
        snprintf(path, n, "%s/tokenizer_config.json", dir);
        if (file_exists(path)) st = template_from_config(path, out);
    }
    mx_free(path);
    return st;
}
