// tokenizer.json pipeline components: what myrmex implements, and the refusal of the rest.
//
//   normalizer     null | Prepend | Replace{String} | NFC | Sequence of those
//   pre_tokenizer  null | Split{Regex known to pretokenize.c, Isolated, invert false}* followed
//                  by at most one ByteLevel or Metaspace (alone or in a Sequence)
//   decoder        null | ByteLevel | Replace{String} | ByteFallback | Fuse | Strip{stop 0} |
//                  Metaspace | Sequence of those
//   post_processor null | ByteLevel | TemplateProcessing (single: special tokens around $A) |
//                  Sequence of those
#include <string.h>

#include "alloc.h"
#include "json_util.h"
#include "tokenizer_components.h"
#include "utf8.h"

#define MAX_NORM_STEPS 16

static MxStatus unsupported(const char *what, const char *type) {
    char safe[64];
    return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "%s \"%s\"", what, tj_safe(type, safe, sizeof safe));
}

// {"String": s} -> s (a copy); {"Regex": ...} is not supported.
static MxStatus string_pattern(const cJSON *o, const char *what, char **out, size_t *len) {
    const cJSON *pat = tj_member(o, "pattern");
    MxStatus st = tj_object(pat, "\"pattern\"", NULL);
    if (st) return st;
    if (tj_member(pat, "Regex")) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "%s with a Regex pattern", what);
    if ((st = tj_dup_string(pat, "String", out, len))) return st;
    if (*len == 0) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "%s with an empty pattern", what);
    return MX_OK;
}

// A member that must be a string of exactly one character (a Rust char), as UTF-8.
static MxStatus one_char(const cJSON *o, const char *key, char *out, size_t *len) {
    const cJSON *v = tj_member(o, key);
    if (!cJSON_IsString(v)) return mx_fail(MX_ERR_TOKENIZER_JSON, "\"%s\" must be a string", key);
    size_t n = strlen(v->valuestring);
    uint32_t cp;
    if (n == 0 || n > 4 || utf8_decode((const uint8_t *)v->valuestring, n, &cp) != n)
        return mx_fail(MX_ERR_TOKENIZER_JSON, "\"%s\" must be one character", key);
    memcpy(out, v->valuestring, n);
    *len = n;
    return MX_OK;
}

// Metaspace's replacement and prepend_scheme (or the older add_prefix_space), as tokenizers
// reads them: the scheme defaults to "always"; add_prefix_space false requires "never".
static MxStatus parse_metaspace(const cJSON *o, char rep[4], size_t *rep_len, PrependScheme *scheme) {
    MxStatus st = one_char(o, "replacement", rep, rep_len);
    if (st) return st;
    const cJSON *ps = tj_member(o, "prepend_scheme");
    *scheme = PREPEND_ALWAYS;
    if (ps) {
        const char *s = cJSON_IsString(ps) ? ps->valuestring : "";
        if (strcmp(s, "always") == 0) *scheme = PREPEND_ALWAYS;
        else if (strcmp(s, "first") == 0) *scheme = PREPEND_FIRST;
        else if (strcmp(s, "never") == 0) *scheme = PREPEND_NEVER;
        else return mx_fail(MX_ERR_TOKENIZER_JSON, "Metaspace prepend_scheme must be always, first or never");
    }
    bool aps;
    if ((st = tj_bool(o, "add_prefix_space", true, &aps))) return st;
    if (!aps && *scheme != PREPEND_NEVER)
        return mx_fail(MX_ERR_TOKENIZER_JSON, "Metaspace add_prefix_space false does not match prepend_scheme");
    return MX_OK;
}

// ---- normalizer -------------------------------------------------------------------------------

static MxStatus normalizer_one(Tokenizer *t, const cJSON *n) {
    const char *type;
    MxStatus st = tj_object(n, "normalizer", &type);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = tj_member(n, "normalizers");
        if (!cJSON_IsArray(list)) return mx_fail(MX_ERR_TOKENIZER_JSON, "normalizer Sequence needs \"normalizers\"");
        for (const cJSON *c = list->child; c && !st; c = c->next) st = normalizer_one(t, c);
        return st;
    }
    bool prepend = strcmp(type, "Prepend") == 0, replace = strcmp(type, "Replace") == 0, nfc = strcmp(type, "NFC") == 0;
    if (!prepend && !replace && !nfc) return unsupported("normalizer", type);
    if (t->n_norm == MAX_NORM_STEPS) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "more than %d normalizers", MAX_NORM_STEPS);
    NormStep *s = &t->norm[t->n_norm++]; // counted first so tokparse_free sees its strings
    if (nfc) {
        s->kind = NORM_NFC;
        return MX_OK;
    }
    if (prepend) {
        s->kind = NORM_PREPEND;
        return tj_dup_string(n, "prepend", &s->a, &s->alen);
    }
    s->kind = NORM_REPLACE;
    if ((st = string_pattern(n, "Replace normalizer", &s->a, &s->alen))) return st;
    return tj_dup_string(n, "content", &s->b, &s->blen);
}

MxStatus tokparse_normalizer(Tokenizer *t, const cJSON *n) {
    if (!n) return MX_OK;
    t->norm = mx_calloc(MAX_NORM_STEPS, sizeof *t->norm);
    if (!t->norm) return mx_fail(MX_ERR_NOMEM, "normalizer");
    return normalizer_one(t, n);
}

// ---- pre-tokenizer ----------------------------------------------------------------------------

static MxStatus pretok_one(Tokenizer *t, const cJSON *p) {
    Pretok *pt = &t->pretok;
    const char *type;
    MxStatus st = tj_object(p, "pre_tokenizer", &type);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = tj_member(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return mx_fail(MX_ERR_TOKENIZER_JSON, "pre_tokenizer Sequence needs \"pretokenizers\"");
        for (const cJSON *c = list->child; c && !st; c = c->next) st = pretok_one(t, c);
        return st;
    }
    bool split = strcmp(type, "Split") == 0, bl = strcmp(type, "ByteLevel") == 0, ms = strcmp(type, "Metaspace") == 0;
    if (!split && !bl && !ms) return unsupported("pre_tokenizer", type);
    if (pt->tail != TAIL_NONE) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "pre_tokenizer %s after ByteLevel or Metaspace", type);
    if (bl) {
        pt->tail = TAIL_BYTELEVEL;
        if ((st = tj_bool(p, "add_prefix_space", true, &pt->bl_add_prefix_space))) return st;
        return tj_bool(p, "use_regex", true, &pt->bl_use_regex);
    }
    if (ms) {
        pt->tail = TAIL_METASPACE;
        if ((st = parse_metaspace(p, pt->ms_rep, &pt->ms_rep_len, &pt->ms_scheme))) return st;
        return tj_bool(p, "split", true, &pt->ms_split);
    }
    const cJSON *pat = tj_member(p, "pattern"), *behavior = tj_member(p, "behavior");
    if ((st = tj_object(pat, "Split \"pattern\"", NULL))) return st;
    const cJSON *re = tj_member(pat, "Regex");
    if (!cJSON_IsString(re)) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "Split pre_tokenizer without a Regex pattern");
    int pattern = pretok_pattern_from_string(re->valuestring);
    if (pattern < 0) return unsupported("Split pre_tokenizer regex", re->valuestring);
    if (!cJSON_IsString(behavior) || strcmp(behavior->valuestring, "Isolated") != 0)
        return unsupported("Split pre_tokenizer behavior", cJSON_IsString(behavior) ? behavior->valuestring : "?");
    bool invert;
    if ((st = tj_bool(p, "invert", false, &invert))) return st;
    if (invert) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "Split pre_tokenizer with invert true");
    if (pt->n_splits == MAX_PRETOK_SPLITS) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "more than %d Split pre_tokenizers", MAX_PRETOK_SPLITS);
    pt->split[pt->n_splits++] = (PretokPattern)pattern;
    return MX_OK;
}

MxStatus tokparse_pre_tokenizer(Tokenizer *t, const cJSON *p) {
    t->pretok.tail = TAIL_NONE;
    if (!p) return MX_OK;
    MxStatus st = pretok_one(t, p);
    if (st) return st;
    // prepend_scheme "first" asks where a piece began in the original text; with a normalizer
    // and normalized added tokens that needs tokenizers' full offset alignment, which myrmex
    // does not keep.
    if (t->pretok.tail == TAIL_METASPACE && t->pretok.ms_scheme == PREPEND_FIRST && t->n_norm > 0) {
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].normalized)
                return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "Metaspace prepend_scheme first with a normalizer and normalized added tokens");
    }
    return MX_OK;
}

// ---- decoder ----------------------------------------------------------------------------------

static MxStatus decoder_one(Tokenizer *t, const cJSON *d) {
    const char *type;
    MxStatus st = tj_object(d, "decoder", &type);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = tj_member(d, "decoders");
        if (!cJSON_IsArray(list)) return mx_fail(MX_ERR_TOKENIZER_JSON, "decoder Sequence needs \"decoders\"");
        for (const cJSON *c = list->child; c && !st; c = c->next) st = decoder_one(t, c);
        return st;
    }
    static const struct {
        const char *name;
        DecKind kind;
    } kinds[] = {{"ByteLevel", DEC_BYTELEVEL}, {"Replace", DEC_REPLACE}, {"ByteFallback", DEC_BYTEFALLBACK},
                 {"Fuse", DEC_FUSE}, {"Strip", DEC_STRIP}, {"Metaspace", DEC_METASPACE}};
    int k = -1;
    for (int i = 0; i < (int)(sizeof kinds / sizeof *kinds); i++)
        if (strcmp(type, kinds[i].name) == 0) k = i;
    if (k < 0) return unsupported("decoder", type);
    if (t->n_dec == MAX_DECODE_STAGES) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "more than %d decoders", MAX_DECODE_STAGES);
    DecStage *s = &t->dec[t->n_dec++];
    s->kind = kinds[k].kind;
    if (s->kind == DEC_REPLACE) {
        if ((st = string_pattern(d, "Replace decoder", &s->a, &s->alen))) return st;
        return tj_dup_string(d, "content", &s->b, &s->blen);
    }
    if (s->kind == DEC_STRIP) {
        char c[4];
        int start, stop;
        if ((st = one_char(d, "content", c, &s->alen))) return st;
        if (!json_get_int(tj_member(d, "start"), &start) || start < 0 || !json_get_int(tj_member(d, "stop"), &stop) || stop < 0)
            return mx_fail(MX_ERR_TOKENIZER_JSON, "Strip decoder needs non-negative start and stop");
        if (stop != 0) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "Strip decoder with stop %d (only 0)", stop);
        s->start = start;
        s->a = mx_malloc(s->alen + 1);
        if (!s->a) return mx_fail(MX_ERR_NOMEM, "Strip decoder");
        memcpy(s->a, c, s->alen);
        s->a[s->alen] = 0;
        return MX_OK;
    }
    if (s->kind == DEC_METASPACE) {
        char rep[4];
        PrependScheme scheme;
        if ((st = parse_metaspace(d, rep, &s->alen, &scheme))) return st;
        s->metaspace_prefix = scheme != PREPEND_NEVER;
        s->a = mx_malloc(s->alen + 1);
        if (!s->a) return mx_fail(MX_ERR_NOMEM, "Metaspace decoder");
        memcpy(s->a, rep, s->alen);
        s->a[s->alen] = 0;
    }
    return MX_OK;
}

MxStatus tokparse_decoder(Tokenizer *t, const cJSON *d) {
    if (d) return decoder_one(t, d);
    t->dec[t->n_dec++].kind = DEC_JOIN_SPACE; // tokenizers: tokens.join(" ")
    return MX_OK;
}

bool tokparse_has_byte_fallback(const Tokenizer *t) {
    for (int i = 0; i < t->n_dec; i++)
        if (t->dec[i].kind == DEC_BYTEFALLBACK) return true;
    return false;
}

// ---- post-processor ---------------------------------------------------------------------------

// Appends the ids of special_tokens[name] to *ids.
static MxStatus template_special(const Tokenizer *t, const cJSON *specials, const char *name, int32_t **ids, int *n) {
    char safe[64];
    const cJSON *entry = cJSON_IsObject(specials) ? tj_member(specials, name) : NULL;
    const cJSON *list = cJSON_IsObject(entry) ? tj_member(entry, "ids") : NULL;
    if (!cJSON_IsArray(list))
        return mx_fail(MX_ERR_TOKENIZER_ADDED, "TemplateProcessing special token \"%s\" has no ids", tj_safe(name, safe, sizeof safe));
    int count = cJSON_GetArraySize(list);
    int32_t *p = mx_realloc(*ids, (size_t)(*n + count + 1) * sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "template ids");
    *ids = p;
    for (const cJSON *e = list->child; e; e = e->next) {
        int id;
        if (!json_get_int(e, &id) || !vocab_has(&t->vocab, id))
            return mx_fail(MX_ERR_TOKENIZER_ADDED, "TemplateProcessing special token \"%s\" has an id that is not a token",
                           tj_safe(name, safe, sizeof safe));
        p[(*n)++] = id;
    }
    return MX_OK;
}

static MxStatus parse_template(Tokenizer *t, const cJSON *p) {
    const cJSON *single = tj_member(p, "single"), *specials = tj_member(p, "special_tokens");
    if (!cJSON_IsArray(single)) return mx_fail(MX_ERR_TOKENIZER_JSON, "TemplateProcessing \"single\" must be a list");
    bool seen_a = false;
    MxStatus st = MX_OK;
    for (const cJSON *it = single->child; it && !st; it = it->next) {
        const cJSON *sp = cJSON_IsObject(it) ? tj_member(it, "SpecialToken") : NULL;
        const cJSON *seq = cJSON_IsObject(it) ? tj_member(it, "Sequence") : NULL;
        const cJSON *id = tj_member(sp ? sp : seq, "id");
        if (cJSON_GetArraySize(it) != 1 || (!sp && !seq) || !cJSON_IsString(id))
            return mx_fail(MX_ERR_TOKENIZER_JSON, "TemplateProcessing piece must be {SpecialToken} or {Sequence}");
        if (seq) {
            if (strcmp(id->valuestring, "A") != 0 || seen_a)
                return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "TemplateProcessing single template other than one $A");
            seen_a = true;
        } else if (seen_a) {
            st = template_special(t, specials, id->valuestring, &t->suffix_ids, &t->n_suffix);
        } else {
            st = template_special(t, specials, id->valuestring, &t->prefix_ids, &t->n_prefix);
        }
    }
    if (!st && !seen_a) st = mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "TemplateProcessing single template without $A");
    return st;
}

static MxStatus post_one(Tokenizer *t, const cJSON *p, bool *have_template) {
    const char *type;
    MxStatus st = tj_object(p, "post_processor", &type);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = tj_member(p, "processors");
        if (!cJSON_IsArray(list)) return mx_fail(MX_ERR_TOKENIZER_JSON, "post_processor Sequence needs \"processors\"");
        for (const cJSON *c = list->child; c && !st; c = c->next) st = post_one(t, c, have_template);
        return st;
    }
    if (strcmp(type, "ByteLevel") == 0) return MX_OK; // offsets only; ids are unchanged
    if (strcmp(type, "TemplateProcessing") != 0) return unsupported("post_processor", type);
    if (*have_template) return mx_fail(MX_ERR_TOKENIZER_UNSUPPORTED, "two TemplateProcessing post_processors");
    *have_template = true;
    return parse_template(t, p);
}

MxStatus tokparse_post_processor(Tokenizer *t, const cJSON *p) {
    bool have_template = false;
    return p ? post_one(t, p, &have_template) : MX_OK;
}

void tokparse_free(Tokenizer *t) {
    for (int i = 0; t->norm && i < t->n_norm; i++) {
        mx_free(t->norm[i].a);
        mx_free(t->norm[i].b);
    }
    mx_free(t->norm);
    t->norm = NULL;
    for (int i = 0; i < t->n_dec; i++) {
        mx_free(t->dec[i].a);
        mx_free(t->dec[i].b);
    }
}
