// Loading a Hugging Face tokenizer.json (BPE model, added tokens, normalizer, pre-tokenizer,
// decoder, post-processor) and the bos/eos/pad settings of tokenizer_config.json and
// generation_config.json, with the validation RELIABILITY.md asks for.
//
// Anything whose behaviour myrmex does not reproduce exactly is refused with
// MX_ERR_TOKENIZER_UNSUPPORTED naming it. Where tokenizers would quietly repair a file (an
// added token whose recorded id is not the id it would assign, a merge naming a missing
// token), the file is refused instead: ids that disagree with the model are worse than none.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "json_util.h"
#include "tokenizer_components.h"
#include "utf8.h"

#define TOKENIZER_JSON_MAX_BYTES ((size_t)512 << 20)
#define SIDE_CONFIG_MAX_BYTES ((size_t)64 << 20) // tokenizer_config.json holds chat templates
#define MAX_TOKEN_ID (1 << 24)                    // without a model vocab size to check against

// ---- small JSON helpers (shared with tokenizer_components.c) ------------------------------------

const cJSON *tj_member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

// Printable ASCII of s, truncated, for messages that must not echo raw bytes.
const char *tj_safe(const char *s, char *buf, size_t size) {
    size_t n = 0;
    for (; s && *s && n + 1 < size; s++) buf[n++] = (*s >= 32 && *s < 127) ? *s : '?';
    buf[n] = 0;
    return buf;
}

// An object without duplicate keys, with a string "type" (*type); what names it in errors.
MxStatus tj_object(const cJSON *o, const char *what, const char **type) {
    if (!cJSON_IsObject(o)) return mx_fail(MX_ERR_TOKENIZER_JSON, "%s must be an object", what);
    int dup = json_has_duplicate_keys(o);
    if (dup < 0) return mx_fail(MX_ERR_NOMEM, "%s", what);
    if (dup) return mx_fail(MX_ERR_TOKENIZER_JSON, "%s has duplicate keys", what);
    if (type) {
        const cJSON *t = tj_member(o, "type");
        if (!cJSON_IsString(t)) return mx_fail(MX_ERR_TOKENIZER_JSON, "%s has no \"type\"", what);
        *type = t->valuestring;
    }
    return MX_OK;
}

MxStatus tj_bool(const cJSON *o, const char *key, bool dflt, bool *out) {
    const cJSON *v = tj_member(o, key);
    if (!v) {
        *out = dflt;
        return MX_OK;
    }
    if (!cJSON_IsBool(v)) return mx_fail(MX_ERR_TOKENIZER_JSON, "\"%s\" must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return MX_OK;
}

// A required string member, copied into *out (mx_malloc'd), *len its length.
MxStatus tj_dup_string(const cJSON *o, const char *key, char **out, size_t *len) {
    const cJSON *v = tj_member(o, key);
    if (!cJSON_IsString(v)) return mx_fail(MX_ERR_TOKENIZER_JSON, "\"%s\" must be a string", key);
    *len = strlen(v->valuestring);
    *out = mx_strdup(v->valuestring);
    return *out ? MX_OK : mx_fail(MX_ERR_NOMEM, "\"%s\"", key);
}

// ---- model.vocab and added_tokens -------------------------------------------------------------

typedef struct AddedEntry {
    const char *content;
    int id;
} AddedEntry;

// Checks every vocab entry and added token; returns the highest id and the string bytes.
static MxStatus scan_ids(const cJSON *vocab, const cJSON *added, int limit, int *max_id, size_t *bytes) {
    *max_id = -1;
    *bytes = 0;
    char safe[64];
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id;
        if (!cJSON_IsNumber(e)) return mx_fail(MX_ERR_TOKENIZER_VOCAB, "token \"%s\" has no numeric id", tj_safe(e->string, safe, sizeof safe));
        if (!json_get_int(e, &id) || id < 0 || id >= limit)
            return mx_fail(MX_ERR_TOKENIZER_VOCAB, "token \"%s\" has id %g, not an integer in [0, %d)",
                           tj_safe(e->string, safe, sizeof safe), e->valuedouble, limit);
        if (id > *max_id) *max_id = id;
        *bytes += strlen(e->string) + 1;
    }
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        MxStatus st = tj_object(a, "added_tokens entry", NULL);
        if (st) return st;
        const cJSON *c = tj_member(a, "content"), *i = tj_member(a, "id");
        int id;
        if (!cJSON_IsString(c)) return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token without a \"content\" string");
        if (!json_get_int(i, &id) || id < 0 || id >= limit)
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token \"%s\" has an id outside [0, %d)",
                           tj_safe(c->valuestring, safe, sizeof safe), limit);
        if (id > *max_id) *max_id = id;
        *bytes += strlen(c->valuestring) + 1;
    }
    return MX_OK;
}

static MxStatus load_vocab(Tokenizer *t, const cJSON *vocab) {
    MxStatus st = strmap_init(&t->bpe.map, (size_t)cJSON_GetArraySize(vocab));
    if (st) return st;
    char safe[64];
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id = (int)e->valuedouble; // checked by scan_ids
        if (vocab_has(&t->vocab, id))
            return mx_fail(MX_ERR_TOKENIZER_VOCAB, "id %d is given to two tokens", id);
        if ((st = vocab_set(&t->vocab, id, e->string, strlen(e->string)))) return st;
        if (strmap_put(&t->bpe.map, &t->vocab, id) >= 0)
            return mx_fail(MX_ERR_TOKENIZER_VOCAB, "token \"%s\" appears twice", tj_safe(e->string, safe, sizeof safe));
    }
    return MX_OK;
}

// Added tokens get the ids tokenizers (0.23) would give them (AddedVocabulary::add_tokens):
// the model's id when the content is in the vocab, else the next of V, V+1, ... where V is
// the number of vocab entries. A file that records other ids is refused.
static MxStatus load_added(Tokenizer *t, const cJSON *added) {
    int n = added ? cJSON_GetArraySize(added) : 0;
    MxStatus st = strmap_init(&t->added_map, (size_t)n);
    if (st) return st;
    if (n == 0) return MX_OK;
    t->added = mx_calloc((size_t)n, sizeof *t->added);
    if (!t->added) return mx_fail(MX_ERR_NOMEM, "added tokens");
    long next_id = (long)t->bpe.map.count;
    char safe[64];
    for (const cJSON *a = added->child; a; a = a->next) {
        const char *content = tj_member(a, "content")->valuestring;
        size_t len = strlen(content);
        int file_id = (int)tj_member(a, "id")->valuedouble;
        AddedToken *tok = &t->added[t->n_added];
        bool normalized = false;
        if ((st = tj_bool(a, "single_word", false, &tok->single_word)) || (st = tj_bool(a, "lstrip", false, &tok->lstrip)) ||
            (st = tj_bool(a, "rstrip", false, &tok->rstrip)) || (st = tj_bool(a, "normalized", true, &normalized)) ||
            (st = tj_bool(a, "special", false, &tok->special)))
            return st;
        tok->normalized = normalized;
        if (len == 0) return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token with empty content");
        if (strmap_get(&t->added_map, &t->vocab, content, len) >= 0)
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token \"%s\" appears twice", tj_safe(content, safe, sizeof safe));
        long want = strmap_get(&t->bpe.map, &t->vocab, content, len);
        if (want < 0) want = next_id++;
        if (file_id != want)
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token \"%s\" has id %d where tokenizers assigns %ld",
                           tj_safe(content, safe, sizeof safe), file_id, want);
        if (!vocab_has(&t->vocab, file_id)) {
            if ((st = vocab_set(&t->vocab, file_id, content, len))) return st;
        } else if (strcmp(vocab_str(&t->vocab, file_id), content) != 0 || t->flags[file_id] & TOKF_ADDED) {
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "added token \"%s\" collides with id %d",
                           tj_safe(content, safe, sizeof safe), file_id);
        }
        strmap_put(&t->added_map, &t->vocab, file_id);
        tok->id = file_id;
        t->flags[file_id] |= TOKF_ADDED | (tok->special ? TOKF_SPECIAL : 0);
        t->n_added++;
    }
    return MX_OK;
}

static MxStatus add_alt(Tokenizer *t, int32_t id, const TokBuf *s) {
    AltString *p = mx_realloc(t->alt, (size_t)(t->n_alt + 1) * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "added token strings");
    t->alt = p;
    char *copy = mx_malloc(s->n + 1);
    if (!copy) return mx_fail(MX_ERR_NOMEM, "added token strings");
    memcpy(copy, s->p, s->n);
    copy[s->n] = 0;
    t->alt[t->n_alt++] = (AltString){id, copy, s->n};
    t->flags[id] |= TOKF_ALT;
    return MX_OK;
}

static int cmp_alt(const void *a, const void *b) {
    int32_t x = ((const AltString *)a)->id, y = ((const AltString *)b)->id;
    return (x > y) - (x < y);
}

const char *tok_decode_string(const Tokenizer *t, int32_t id, size_t *len) {
    if (t->flags[id] & TOKF_ALT) {
        size_t lo = 0, hi = (size_t)t->n_alt;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (t->alt[mid].id < id) lo = mid + 1;
            else hi = mid;
        }
        MX_ASSERT(lo < (size_t)t->n_alt && t->alt[lo].id == id);
        *len = t->alt[lo].n;
        return t->alt[lo].s;
    }
    *len = t->vocab.len[id];
    return vocab_str(&t->vocab, id);
}

// The two tries: tokens matched on the raw text, and tokens matched on normalized text (their
// content normalized first, as AddedVocabulary::refresh_added_tokens does). Special tokens
// come first, so of two identical normalized patterns the special one wins, as there.
static MxStatus build_tries(Tokenizer *t) {
    MxStatus st;
    if ((st = trie_init(&t->trie_raw)) || (st = trie_init(&t->trie_norm))) return st;
    TokBuf out = {0}, tmp = {0};
    char safe[64];
    for (int pass = 0; pass < 2 && !st; pass++) {
        for (int i = 0; i < t->n_added && !st; i++) {
            const AddedToken *a = &t->added[i];
            if (a->special != (pass == 0)) continue;
            const char *s = vocab_str(&t->vocab, a->id);
            size_t n = t->vocab.len[a->id];
            if (!a->normalized) {
                st = trie_add(&t->trie_raw, s, n, i);
                continue;
            }
            if ((st = tok_normalize(t, s, n, &out, &tmp))) break;
            if (out.n == 0) st = mx_fail(MX_ERR_TOKENIZER_ADDED, "added token \"%s\" normalizes to nothing", tj_safe(s, safe, sizeof safe));
            else st = trie_add(&t->trie_norm, out.p, out.n, i);
            if (!st && (out.n != n || memcmp(out.p, s, n) != 0)) st = add_alt(t, a->id, &out);
        }
    }
    tokbuf_free(&out);
    tokbuf_free(&tmp);
    if (st) return st;
    if (t->n_alt > 1) qsort(t->alt, (size_t)t->n_alt, sizeof *t->alt, cmp_alt);
    // skip_special drops an id when the string it decodes as is a special token's content.
    for (int id = 0; id < t->vocab.n_ids; id++) {
        if (!vocab_has(&t->vocab, id)) continue;
        size_t len;
        const char *s = tok_decode_string(t, id, &len);
        int32_t owner = strmap_get(&t->added_map, &t->vocab, s, len);
        if (owner >= 0 && (t->flags[owner] & TOKF_SPECIAL)) t->flags[id] |= TOKF_SKIP;
    }
    return MX_OK;
}

// ---- model.merges -------------------------------------------------------------------------------

static MxStatus merge_id(const Tokenizer *t, const char *s, size_t n, int rank, int32_t *id) {
    char safe[64];
    if (n == 0) return mx_fail(MX_ERR_TOKENIZER_MERGES, "merge %d has an empty token", rank + 1);
    *id = strmap_get(&t->bpe.map, &t->vocab, s, n);
    if (*id < 0) return mx_fail(MX_ERR_TOKENIZER_MERGES, "merge %d: \"%s\" is not in the vocab", rank + 1, tj_safe(s, safe, sizeof safe));
    return MX_OK;
}

static MxStatus load_merges(Tokenizer *t, const cJSON *merges) {
    if (merges && !cJSON_IsArray(merges)) return mx_fail(MX_ERR_TOKENIZER_MERGES, "\"merges\" must be a list");
    int n = merges ? cJSON_GetArraySize(merges) : 0;
    MxStatus st = mergemap_init(&t->bpe.merges, (size_t)n);
    if (st || n == 0) return st;
    bool pairs = cJSON_IsArray(merges->child);
    TokBuf cat = {0};
    int rank = 0;
    for (const cJSON *m = merges->child; m && !st; m = m->next, rank++) {
        const char *a, *b;
        size_t an, bn;
        if (pairs) { // ["a", "b"]
            if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(m->child) ||
                !cJSON_IsString(m->child->next)) {
                st = mx_fail(MX_ERR_TOKENIZER_MERGES, "merge %d is not a pair of strings", rank + 1);
                break;
            }
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            an = strlen(a);
            bn = strlen(b);
        } else { // "a b": exactly one space
            const char *sp = cJSON_IsString(m) ? strchr(m->valuestring, ' ') : NULL;
            if (!sp || strchr(sp + 1, ' ')) {
                st = mx_fail(MX_ERR_TOKENIZER_MERGES, "merge %d is not \"left right\"", rank + 1);
                break;
            }
            a = m->valuestring;
            an = (size_t)(sp - a);
            b = sp + 1;
            bn = strlen(b);
        }
        int32_t left = 0, right = 0, merged = 0;
        cat.n = 0;
        if ((st = merge_id(t, a, an, rank, &left)) || (st = merge_id(t, b, bn, rank, &right)) ||
            (st = tokbuf_append(&cat, a, an)) || (st = tokbuf_append(&cat, b, bn)) ||
            (st = merge_id(t, cat.p, cat.n, rank, &merged)))
            break;
        mergemap_put(&t->bpe.merges, left, right, (uint32_t)rank, merged);
    }
    tokbuf_free(&cat);
    return st;
}

// ---- model ------------------------------------------------------------------------------------

static MxStatus parse_model_fields(Tokenizer *t, const cJSON *model) {
    MxStatus st;
    BpeModel *m = &t->bpe;
    if ((st = tj_bool(model, "fuse_unk", false, &m->fuse_unk)) || (st = tj_bool(model, "byte_fallback", false, &m->byte_fallback)) ||
        (st = tj_bool(model, "ignore_merges", false, &m->ignore_merges)))
        return st;
    const cJSON *dropout = tj_member(model, "dropout");
    if (dropout && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "BPE dropout (must be null or 0)");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = tj_member(model, affixes[i]);
        if (v && !(cJSON_IsString(v) && v->valuestring[0] == 0))
            return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "BPE %s", affixes[i]);
    }
    m->unk_id = -1;
    const cJSON *unk = tj_member(model, "unk_token");
    if (unk) {
        if (!cJSON_IsString(unk)) return mx_fail(MX_ERR_TOKENIZER_JSON, "\"unk_token\" must be a string");
        m->unk_id = strmap_get(&m->map, &t->vocab, unk->valuestring, strlen(unk->valuestring));
        if (m->unk_id < 0) {
            tj_safe(unk->valuestring, t->missing_unk, sizeof t->missing_unk);
            if (!t->missing_unk[0]) t->missing_unk[0] = '?';
        }
    }
    return MX_OK;
}

// tokenizers fails encoding when it needs an unk_token that is not in the vocab. A model
// that can never need it (every byte has a token) loads; any other is refused up front.
static MxStatus check_missing_unk(const Tokenizer *t) {
    if (!t->missing_unk[0]) return MX_OK;
    bool bytelevel = t->pretok.tail == TAIL_BYTELEVEL, fallback = t->bpe.byte_fallback;
    for (int b = 0; b < 256; b++) {
        bytelevel = bytelevel && t->bpe.bl_id[b] >= 0;
        fallback = fallback && t->bpe.byte_token[b] >= 0;
    }
    if (bytelevel || fallback) return MX_OK;
    return mx_fail(MX_ERR_TOKENIZER_VOCAB, "unk_token \"%s\" is not in the vocab", t->missing_unk);
}

// A token spelled like a byte token must be one: "<0x" two uppercase hex digits ">".
static MxStatus check_byte_tokens(const Tokenizer *t) {
    for (int id = 0; id < t->vocab.n_ids; id++) {
        if (!vocab_has(&t->vocab, id) || t->vocab.len[id] != 6) continue;
        const char *s = vocab_str(&t->vocab, id);
        if (memcmp(s, "<0x", 3) != 0 || s[5] != '>') continue;
        for (int k = 3; k < 5; k++) {
            if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'A' && s[k] <= 'F')))
                return mx_fail(MX_ERR_TOKENIZER_BYTE_TOKEN, "token %d looks like <0xNN> but is not two uppercase hex digits", id);
        }
    }
    return MX_OK;
}

static MxStatus parse_model(Tokenizer *t, const cJSON *root, int limit) {
    const cJSON *model = tj_member(root, "model"), *added = tj_member(root, "added_tokens");
    const char *type;
    char safe[64];
    MxStatus st = tj_object(model, "\"model\"", &type);
    if (st) return st;
    if (strcmp(type, "BPE") != 0) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "model type \"%s\" (only BPE)", tj_safe(type, safe, sizeof safe));
    const cJSON *vocab = tj_member(model, "vocab");
    if (!cJSON_IsObject(vocab)) return mx_fail(MX_ERR_TOKENIZER_VOCAB, "\"vocab\" must be an object");
    if (added && !cJSON_IsArray(added)) return mx_fail(MX_ERR_TOKENIZER_ADDED, "\"added_tokens\" must be a list");
    int max_id;
    size_t bytes;
    if ((st = scan_ids(vocab, added, limit, &max_id, &bytes))) return st;
    if (max_id < 0) return mx_fail(MX_ERR_TOKENIZER_VOCAB, "the vocab is empty");
    if ((st = vocab_init(&t->vocab, max_id + 1, bytes))) return st;
    t->flags = mx_calloc((size_t)max_id + 1, 1);
    if (!t->flags) return mx_fail(MX_ERR_NOMEM, "token flags");
    t->bpe.vocab = &t->vocab;
    if ((st = load_vocab(t, vocab)) || (st = load_added(t, added)) || (st = parse_model_fields(t, model)) ||
        (st = load_merges(t, tj_member(model, "merges"))))
        return st;
    return MX_OK;
}

// ---- tokenizer_config.json and generation_config.json -------------------------------------------

// bos_token etc.: a string, {"content": string, ...}, or null (-1). A token that is not in
// the vocabulary is an error when required, else -1 (pad_token: transformers would add it).
static MxStatus config_token(const Tokenizer *t, const cJSON *cfg, const char *key, bool required, int32_t *id) {
    const cJSON *v = tj_member(cfg, key);
    *id = -1;
    if (!v) return MX_OK;
    if (cJSON_IsObject(v)) v = tj_member(v, "content");
    if (!cJSON_IsString(v)) return mx_fail(MX_ERR_TOKENIZER_JSON, "tokenizer_config.json \"%s\" must be a string", key);
    *id = tokenizer_find(t, v->valuestring);
    char safe[64];
    if (*id < 0 && required) return mx_fail(MX_ERR_TOKENIZER_ADDED, "tokenizer_config.json %s \"%s\" is not a token", key, tj_safe(v->valuestring, safe, sizeof safe));
    return MX_OK;
}

static MxStatus add_eos(Tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eos; i++)
        if (t->eos[i] == id) return MX_OK;
    int32_t *p = mx_realloc(t->eos, (size_t)(t->n_eos + 1) * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "eos ids");
    t->eos = p;
    t->eos[t->n_eos++] = id;
    return MX_OK;
}

static MxStatus set_ids(int32_t **dst, int *n, const int32_t *ids, int count) {
    mx_free(*dst);
    *dst = NULL;
    *n = 0;
    if (count == 0) return MX_OK;
    *dst = mx_malloc((size_t)count * sizeof **dst);
    if (!*dst) return mx_fail(MX_ERR_NOMEM, "special ids");
    memcpy(*dst, ids, (size_t)count * sizeof **dst);
    *n = count;
    return MX_OK;
}

// transformers (5.x, TokenizersBackend): when tokenizer_config.json names add_bos_token or
// add_eos_token, the post-processor is replaced by "[bos] $A [eos]" per those flags (an
// absent flag is false). Otherwise tokenizer.json's post-processor stands.
static MxStatus apply_tokenizer_config(Tokenizer *t, const cJSON *cfg) {
    MxStatus st = tj_object(cfg, "tokenizer_config.json", NULL);
    int32_t bos, eos;
    if (st || (st = config_token(t, cfg, "bos_token", true, &bos)) || (st = config_token(t, cfg, "eos_token", true, &eos)) ||
        (st = config_token(t, cfg, "pad_token", false, &t->pad)))
        return st;
    if (bos >= 0) t->bos = bos;
    if (eos >= 0 && (st = add_eos(t, eos))) return st;
    if (!tj_member(cfg, "add_bos_token") && !tj_member(cfg, "add_eos_token")) return MX_OK;
    bool add_bos = false, add_eos_flag = false;
    if ((st = tj_bool(cfg, "add_bos_token", false, &add_bos)) || (st = tj_bool(cfg, "add_eos_token", false, &add_eos_flag)))
        return st;
    if ((st = set_ids(&t->prefix_ids, &t->n_prefix, &bos, add_bos && bos >= 0))) return st;
    return set_ids(&t->suffix_ids, &t->n_suffix, &eos, add_eos_flag && eos >= 0);
}

// eos_token_id: an id or a list of ids; bos_token_id: an id (used when tokenizer_config.json
// names no bos_token).
static MxStatus apply_generation_config(Tokenizer *t, const cJSON *gen) {
    MxStatus st = tj_object(gen, "generation_config.json", NULL);
    if (st) return st;
    const cJSON *eos = tj_member(gen, "eos_token_id"), *bos = tj_member(gen, "bos_token_id");
    const cJSON *first = cJSON_IsArray(eos) ? eos->child : eos;
    for (const cJSON *e = first; e; e = cJSON_IsArray(eos) ? e->next : NULL) {
        int id;
        if (!json_get_int(e, &id) || id < 0 || id >= t->id_limit)
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "generation_config.json eos_token_id must be ids below %d", t->id_limit);
        if ((st = add_eos(t, id))) return st;
    }
    if (bos && t->bos < 0) {
        int id;
        if (!json_get_int(bos, &id) || id < 0 || id >= t->id_limit)
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "generation_config.json bos_token_id must be an id below %d", t->id_limit);
        t->bos = id;
    }
    return MX_OK;
}

// ---- entry points -----------------------------------------------------------------------------

static MxStatus parse_json(const char *text, size_t len, const char *what, cJSON **root) {
    *root = NULL;
    if (!utf8_valid((const uint8_t *)text, len)) return mx_fail(MX_ERR_TOKENIZER_JSON, "%s is not valid UTF-8", what);
    if (!json_strict_ok(text, len)) return mx_fail(MX_ERR_TOKENIZER_JSON, "%s is not valid JSON", what);
    return json_parse_checked(text, len, what, root);
}

static MxStatus build(Tokenizer *t, const cJSON *root, int model_vocab) {
    MxStatus st = tj_object(root, "tokenizer.json", NULL);
    if (st) return st;
    t->model_vocab = model_vocab;
    t->bos = t->pad = -1;
    if ((st = parse_model(t, root, model_vocab > 0 ? model_vocab : MAX_TOKEN_ID))) return st;
    t->id_limit = t->vocab.n_ids > model_vocab ? t->vocab.n_ids : model_vocab;
    if ((st = tokparse_normalizer(t, tj_member(root, "normalizer"))) || (st = tokparse_pre_tokenizer(t, tj_member(root, "pre_tokenizer"))) ||
        (st = tokparse_decoder(t, tj_member(root, "decoder"))) || (st = tokparse_post_processor(t, tj_member(root, "post_processor"))))
        return st;
    if (t->bpe.byte_fallback || tokparse_has_byte_fallback(t)) {
        if ((st = check_byte_tokens(t))) return st;
    }
    if ((st = build_tries(t)) || (st = bpe_prepare(&t->bpe))) return st;
    return check_missing_unk(t);
}

MxStatus tokenizer_load_json(const char *json, size_t len, int model_vocab, Tokenizer **out) {
    *out = NULL;
    if (!json || model_vocab < 0 || len > TOKENIZER_JSON_MAX_BYTES)
        return mx_fail(MX_ERR_ARG, "tokenizer_load_json: bad arguments");
    cJSON *root;
    MxStatus st = parse_json(json, len, "tokenizer.json", &root);
    if (st) return st;
    Tokenizer *t = mx_calloc(1, sizeof *t);
    if (!t) st = mx_fail(MX_ERR_NOMEM, "tokenizer");
    else st = build(t, root, model_vocab);
    cJSON_Delete(root);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return MX_OK;
}

// Reads and applies DIR/name when it exists.
static MxStatus load_side_file(Tokenizer *t, const char *dir, const char *name,
                               MxStatus (*apply)(Tokenizer *, const cJSON *)) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return mx_fail(MX_ERR_ARG, "model path too long");
    if (access(path, F_OK) != 0) return MX_OK;
    char *text;
    size_t len;
    MxStatus st = json_read_file(path, SIDE_CONFIG_MAX_BYTES, &text, &len);
    if (st) return st == MX_ERR_NOMEM ? st : mx_fail(MX_ERR_TOKENIZER_JSON, "cannot read %s", path);
    cJSON *root;
    st = parse_json(text, len, name, &root);
    mx_free(text);
    if (st) return st;
    st = apply(t, root);
    cJSON_Delete(root);
    return st;
}

MxStatus tokenizer_load(const char *dir, int model_vocab, Tokenizer **out) {
    *out = NULL;
    if (!dir) return mx_fail(MX_ERR_ARG, "tokenizer_load: no directory");
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path)
        return mx_fail(MX_ERR_ARG, "model path too long");
    char *text;
    size_t len;
    MxStatus st = json_read_file(path, TOKENIZER_JSON_MAX_BYTES, &text, &len);
    if (st) return st == MX_ERR_NOMEM ? st : mx_fail(MX_ERR_TOKENIZER_JSON, "cannot read %s", path);
    Tokenizer *t;
    st = tokenizer_load_json(text, len, model_vocab, &t);
    mx_free(text);
    if (st) return st;
    if ((st = load_side_file(t, dir, "tokenizer_config.json", apply_tokenizer_config)) ||
        (st = load_side_file(t, dir, "generation_config.json", apply_generation_config))) {
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return MX_OK;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    vocab_free(&t->vocab);
    mx_free(t->flags);
    bpe_model_free(&t->bpe);
    mx_free(t->added);
    strmap_free(&t->added_map);
    trie_free(&t->trie_raw);
    trie_free(&t->trie_norm);
    for (int i = 0; i < t->n_alt; i++) mx_free(t->alt[i].s);
    mx_free(t->alt);
    tokparse_free(t);
    mx_free(t->prefix_ids);
    mx_free(t->suffix_ids);
    mx_free(t->eos);
    mx_free(t);
}
