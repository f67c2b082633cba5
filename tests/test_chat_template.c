// Chat templates against Hugging Face transformers: every conversation in
// fixtures/chat/<family>.jsonl (written by tests/make_chat_fixtures.py) must render byte for
// byte as apply_chat_template did, or be refused with MX_ERR_ARG where the fixture says so;
// detection on real template strings; chat_template_load on the file forms; allocation
// failures at every point of a render.
//
// usage: test_chat_template FIXTURES_DIR   (the chat fixtures are in FIXTURES_DIR/chat)
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "chat_template.h"
#include "json_util.h"
#include "test_util.h"

static const char *fixtures_dir;
static int cases_seen;

// Calls fn(line, user) for each JSON object line of fixtures/chat/<name>; returns the count.
static int for_each_line(const char *name, void (*fn)(const cJSON *, void *), void *user) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chat/%s", fixtures_dir, name);
    char *text = NULL;
    size_t len = 0;
    if (json_read_file(path, 64u << 20, &text, &len) != MX_OK) {
        fprintf(stderr, "cannot read %s (regenerate with python3 tests/make_chat_fixtures.py)\n", path);
        CHECK(0);
        return 0;
    }
    int n = 0;
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end) end = text + len;
        *end = 0;
        if (end > line) {
            cJSON *obj = cJSON_Parse(line);
            CHECK(cJSON_IsObject(obj));
            if (cJSON_IsObject(obj)) fn(obj, user);
            cJSON_Delete(obj);
            n++;
        }
        line = end + 1;
    }
    mx_free(text);
    return n;
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Prints where two strings first differ, with a little context.
static void show_diff(const char *name, const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i]) i++;
    size_t from = i > 20 ? i - 20 : 0;
    fprintf(stderr, "  case '%s': differs at byte %zu\n    want: \"%.60s\"\n    got:  \"%.60s\"\n", name, i, want + from,
            got + from);
}

// --- rendering fixtures -------------------------------------------------------------------

static void check_case(const cJSON *row, void *user) {
    ChatFamily fam = *(const ChatFamily *)user;
    const char *name = str_field(row, "name");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(row, "messages");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(row, "add_generation_prompt");
    const char *want = str_field(row, "text");
    const char *error = str_field(row, "error");
    CHECK(name && cJSON_IsArray(msgs) && cJSON_IsBool(gen) && (want != NULL) != (error != NULL));
    if (!name || !cJSON_IsArray(msgs) || !cJSON_IsBool(gen)) return;
    int n = cJSON_GetArraySize(msgs);
    ChatMessage m[32];
    CHECK(n <= 32);
    if (n > 32) return;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i);
        m[i].role = str_field(e, "role");
        m[i].content = str_field(e, "content");
    }
    char *got = NULL;
    MxStatus st = chat_render(fam, m, n, cJSON_IsTrue(gen), &got);
    cases_seen++;
    if (error) {
        if (st != MX_ERR_ARG) fprintf(stderr, "  %s case '%s' should be refused (%s)\n", chat_family_name(fam), name, error);
        CHECK_STATUS(st, MX_ERR_ARG);
        CHECK(got == NULL);
    } else {
        CHECK_STATUS(st, MX_OK);
        CHECK(got != NULL);
        if (got && want && strcmp(got, want) != 0) {
            show_diff(name, want, got);
            CHECK(!"rendering differs from transformers");
        }
    }
    mx_free(got);
}

static void test_fixtures(void) {
    for (int f = CHAT_LLAMA2; f < CHAT_FAMILY_COUNT; f++) {
        char file[64];
        snprintf(file, sizeof file, "%s.jsonl", chat_family_name((ChatFamily)f));
        ChatFamily fam = (ChatFamily)f;
        int n = for_each_line(file, check_case, &fam);
        CHECK(n >= 20);
    }
}

// --- detection ----------------------------------------------------------------------------

static void check_detect(const cJSON *row, void *user) {
    (void)user;
    const char *name = str_field(row, "name"), *tpl = str_field(row, "template"), *fam = str_field(row, "family");
    CHECK(name && tpl && fam);
    if (!name || !tpl || !fam) return;
    ChatFamily got = chat_family_detect(tpl, NULL);
    if (strcmp(chat_family_name(got), fam) != 0)
        fprintf(stderr, "  detect '%s': got %s, want %s\n", name, chat_family_name(got), fam);
    CHECK(strcmp(chat_family_name(got), fam) == 0);
}

static void test_detect(void) {
    CHECK(for_each_line("detect.jsonl", check_detect, NULL) >= 6);
    CHECK(chat_family_detect(NULL, NULL) == CHAT_UNKNOWN);
    CHECK(chat_family_detect("{{ messages }}", NULL) == CHAT_UNKNOWN);
    CHECK(chat_family_detect("x [INST] y <<SYS>>", NULL) == CHAT_LLAMA2);
    // The llama-3 marker wins over an [INST] in the same template.
    CHECK(chat_family_detect("[INST] <|start_header_id|>", NULL) == CHAT_LLAMA3);
}

// Detection by tokens and chat_check_tokenizer, on the tokenizer fixtures
// (fixtures/tokenizers/<name>, tests/make_tokenizer_fixtures.py) when they are there.
static Tokenizer *load_fixture_tokenizer(const char *name) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", fixtures_dir, name);
    Tokenizer *tok = NULL;
    if (tokenizer_load(dir, 0, &tok) != MX_OK) {
        fprintf(stderr, "  (no tokenizer fixture %s: %s)\n", name, mx_last_error());
        return NULL;
    }
    return tok;
}

static void test_detect_tokens(void) {
    Tokenizer *llama3 = load_fixture_tokenizer("llama3"), *llama2 = load_fixture_tokenizer("llama2");
    Tokenizer *mistral = load_fixture_tokenizer("mistral"), *gpt2 = load_fixture_tokenizer("gpt2");
    if (llama3) {
        CHECK(chat_family_detect(NULL, llama3) == CHAT_LLAMA3);
        CHECK_STATUS(chat_check_tokenizer(CHAT_LLAMA3, llama3), MX_OK);
        CHECK_STATUS(chat_check_tokenizer(CHAT_CHATML, llama3), MX_ERR_ARG);
        CHECK(strstr(mx_last_error(), "<|im_start|>") != NULL);
        // A template, when there is one, decides; an unrecognised one does not fall back.
        CHECK(chat_family_detect("<|im_start|>", llama3) == CHAT_CHATML);
        CHECK(chat_family_detect("<start_of_turn>", llama3) == CHAT_UNKNOWN);
        // The rendered BOS encodes as the one bos token (add_special = false).
        ChatMessage m[] = {{"system", "S"}, {"user", "hello"}};
        char *text = NULL;
        int32_t *ids = NULL;
        int n = 0;
        CHECK_STATUS(chat_render(CHAT_LLAMA3, m, 2, true, &text), MX_OK);
        if (text) CHECK_STATUS(tokenizer_encode(llama3, text, strlen(text), false, &ids, &n), MX_OK);
        CHECK(n > 2 && ids && ids[0] == tokenizer_bos(llama3) && ids[1] == tokenizer_find(llama3, "<|start_header_id|>"));
        int n_bos = 0;
        for (int i = 0; ids && i < n; i++) n_bos += ids[i] == tokenizer_bos(llama3);
        CHECK(n_bos == 1);
        mx_free(ids);
        mx_free(text);
    }
    if (llama2) { // <s> and </s> only: llama-2 or mistral, the tokens cannot tell
        CHECK(chat_family_detect(NULL, llama2) == CHAT_UNKNOWN);
        CHECK_STATUS(chat_check_tokenizer(CHAT_LLAMA2, llama2), MX_OK);
        CHECK_STATUS(chat_check_tokenizer(CHAT_MISTRAL, llama2), MX_OK);
        CHECK_STATUS(chat_check_tokenizer(CHAT_LLAMA3, llama2), MX_ERR_ARG);
    }
    if (mistral) CHECK(chat_family_detect(NULL, mistral) == CHAT_MISTRAL); // [INST] is a special token
    if (gpt2) {
        CHECK(chat_family_detect(NULL, gpt2) == CHAT_UNKNOWN);
        CHECK_STATUS(chat_check_tokenizer(CHAT_LLAMA2, gpt2), MX_ERR_ARG);
    }
    CHECK_STATUS(chat_check_tokenizer(CHAT_UNKNOWN, llama3), MX_ERR_ARG);
    tokenizer_free(llama3);
    tokenizer_free(llama2);
    tokenizer_free(mistral);
    tokenizer_free(gpt2);
}

// --- names --------------------------------------------------------------------------------

static void test_names(void) {
    for (int f = CHAT_LLAMA2; f < CHAT_FAMILY_COUNT; f++) {
        CHECK(chat_family_from_name(chat_family_name((ChatFamily)f)) == f);
        CHECK(strstr(chat_family_list(), chat_family_name((ChatFamily)f)) != NULL);
    }
    CHECK(chat_family_from_name("llama2") == CHAT_LLAMA2);
    CHECK(chat_family_from_name("llama3") == CHAT_LLAMA3);
    CHECK(chat_family_from_name("unknown") == -1);
    CHECK(chat_family_from_name("ChatML") == -1);
    CHECK(chat_family_from_name("") == -1);
    CHECK(chat_family_from_name(NULL) == -1);
    CHECK(strcmp(chat_family_name(CHAT_UNKNOWN), "unknown") == 0);
    CHECK(strcmp(chat_family_name((ChatFamily)99), "unknown") == 0);
}

// --- argument errors ----------------------------------------------------------------------

static void test_errors(void) {
    ChatMessage ok = {"user", "hi"};
    char *out = (char *)1;
    CHECK_STATUS(chat_render(CHAT_UNKNOWN, &ok, 1, true, &out), MX_ERR_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(chat_render(CHAT_FAMILY_COUNT, &ok, 1, true, &out), MX_ERR_ARG);
    CHECK_STATUS(chat_render(CHAT_CHATML, &ok, 0, true, &out), MX_ERR_ARG);
    CHECK_STATUS(chat_render(CHAT_CHATML, NULL, 1, true, &out), MX_ERR_ARG);
    ChatMessage null_content = {"user", NULL}, null_role = {NULL, "x"}, bad_role = {"User", "x"};
    for (int f = CHAT_LLAMA2; f < CHAT_FAMILY_COUNT; f++) {
        CHECK_STATUS(chat_render((ChatFamily)f, &null_content, 1, true, &out), MX_ERR_ARG);
        CHECK_STATUS(chat_render((ChatFamily)f, &null_role, 1, true, &out), MX_ERR_ARG);
        CHECK_STATUS(chat_render((ChatFamily)f, &bad_role, 1, true, &out), MX_ERR_ARG);
        CHECK(strstr(mx_last_error(), "unknown role 'User'") != NULL);
    }
    // The message names the offending message and the rule.
    ChatMessage two_users[] = {{"system", "s"}, {"user", "a"}, {"user", "b"}};
    CHECK_STATUS(chat_render(CHAT_LLAMA2, two_users, 3, false, &out), MX_ERR_ARG);
    CHECK(strstr(mx_last_error(), "chat message 2 is user, expected assistant") != NULL);
    CHECK(strstr(mx_last_error(), "alternating") != NULL);
    // llama-3 and chatml take them, as their templates do.
    CHECK_STATUS(chat_render(CHAT_CHATML, two_users, 3, false, &out), MX_OK);
    mx_free(out);
}

// Every allocation of a render failing in turn: MX_ERR_NOMEM, *out NULL, nothing leaked
// (LeakSanitizer in the sanitizer build); then the same call succeeds.
static void test_alloc_failures(void) {
    ChatMessage m[] = {{"system", "You are terse."}, {"user", "Hello there, this is a longer message "
                                                              "so that the output buffer grows more than once......"
                                                              "........................................................"
                                                              "........................................................"
                                                              "........................................................"},
                       {"assistant", "ok"}, {"user", "bye"}};
    for (int f = CHAT_LLAMA2; f < CHAT_FAMILY_COUNT; f++) {
        int failures_seen = 0;
        for (long k = 0; k < 64; k++) {
            char *out = NULL;
            mx_alloc_fail_after(k);
            MxStatus st = chat_render((ChatFamily)f, m, 4, true, &out);
            mx_alloc_fail_after(-1);
            if (st == MX_OK) {
                CHECK(out != NULL);
                mx_free(out);
                break;
            }
            failures_seen++;
            CHECK_STATUS(st, MX_ERR_NOMEM);
            CHECK(out == NULL);
        }
        CHECK(failures_seen >= 2);
    }
}

// --- chat_template_load -------------------------------------------------------------------

static void load_expect(const char *dir, MxStatus want_st, const char *want) {
    char *got = (char *)1;
    CHECK_STATUS(chat_template_load(dir, &got), want_st);
    if (want) CHECK(got && strcmp(got, want) == 0);
    else CHECK(got == NULL);
    mx_free(got);
}

static void write_config(const char *dir, const char *json) { CHECK(test_write_file(dir, "tokenizer_config.json", json, strlen(json)) == 0); }

static void test_load(void) {
    const char *d = test_tmpdir("chat-load");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", d);
    load_expect(dir, MX_OK, NULL); // nothing there
    write_config(dir, "{\"bos_token\": \"<s>\"}");
    load_expect(dir, MX_OK, NULL); // a config without a template
    write_config(dir, "{\"chat_template\": null}");
    load_expect(dir, MX_OK, NULL);
    write_config(dir, "{\"chat_template\": \"{{ bos_token }}[INST]\\n\"}");
    load_expect(dir, MX_OK, "{{ bos_token }}[INST]\n");
    write_config(dir, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                      "{\"name\": \"default\", \"template\": \"D\"}]}");
    load_expect(dir, MX_OK, "D");
    write_config(dir, "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}, {\"template\": \"X\"}]}");
    load_expect(dir, MX_OK, "R");
    write_config(dir, "{\"chat_template\": []}");
    load_expect(dir, MX_ERR_TOKENIZER_JSON, NULL);
    write_config(dir, "{\"chat_template\": 42}");
    load_expect(dir, MX_ERR_TOKENIZER_JSON, NULL);
    write_config(dir, "{\"chat_template\": \"x\",");
    load_expect(dir, MX_ERR_TOKENIZER_JSON, NULL);
    write_config(dir, "[1, 2]");
    load_expect(dir, MX_ERR_TOKENIZER_JSON, NULL);
    // chat_template.jinja (transformers >= 4.43 saves it beside the config) wins.
    write_config(dir, "{\"chat_template\": \"from config\"}");
    const char *jinja = "{% for m in messages %}<|im_start|>{% endfor %}\n";
    CHECK(test_write_file(dir, "chat_template.jinja", jinja, strlen(jinja)) == 0);
    load_expect(dir, MX_OK, jinja);
}

int main(int argc, char **argv) {
    fixtures_dir = argc > 1 ? argv[1] : "tests/fixtures";
    json_init();
    RUN(test_names);
    RUN(test_fixtures);
    RUN(test_detect);
    RUN(test_detect_tokens);
    RUN(test_errors);
    RUN(test_alloc_failures);
    RUN(test_load);
    fprintf(stderr, "test_chat_template: %d fixture cases\n", cases_seen);
    return test_exit();
}
