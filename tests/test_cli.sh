#!/usr/bin/env bash
# End-to-end tests of the myrmex command line: dispatch, help, usage errors (exit 2),
# runtime errors (exit 1), make-model -> inspect, determinism, sharding, --force.
#
# usage: test_cli.sh MYRMEX_BINARY FIXTURES_DIR   (scratch files under $MYRMEX_TMP or mktemp)
set -euo pipefail

MYRMEX=${1:?usage: test_cli.sh MYRMEX_BINARY FIXTURES_DIR}
FIXTURES=${2:-}
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/cli-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
trap 'rm -rf "$SCRATCH"' EXIT

failures=0
checks=0
OUT=$SCRATCH/stdout
ERR=$SCRATCH/stderr

fail() {
    echo "FAIL: $*" >&2
    echo "  stdout: $(head -c 600 "$OUT")" >&2
    echo "  stderr: $(head -c 600 "$ERR")" >&2
    failures=$((failures + 1))
}

# expect RC CMD...: runs myrmex CMD..., checks its exit status; stdout/stderr kept in $OUT/$ERR.
# Always returns 0 (set -e), so `expect ... && grep_in ...` still checks the output.
expect() {
    local want=$1
    shift
    checks=$((checks + 1))
    local rc=0
    "$MYRMEX" "$@" >"$OUT" 2>"$ERR" || rc=$?
    if [[ $rc -ne $want ]]; then
        fail "myrmex $* exited $rc, expected $want"
    fi
    return 0
}

# grep_in FILE PATTERN: a fixed string the last command printed.
grep_in() {
    checks=$((checks + 1))
    if ! grep -qF -- "$2" "$1"; then
        fail "expected '$2' in $(basename "$1")"
    fi
}

# usage_error MESSAGE CMD...: exit 2, nothing on stdout, the message on stderr.
usage_error() {
    local msg=$1
    shift
    expect 2 "$@"
    grep_in "$ERR" "$msg"
    checks=$((checks + 1))
    [[ ! -s $OUT ]] || fail "myrmex $* printed to stdout on a usage error"
}

# --- dispatch and help ----------------------------------------------------------------------
expect 0 --help && grep_in "$OUT" "make-model"
expect 0 help && grep_in "$OUT" "inspect"
expect 0 -h && grep_in "$OUT" "generate"
expect 2 && grep_in "$ERR" "usage: myrmex <command>"
usage_error "unknown command 'frobnicate'" frobnicate
usage_error "did you mean 'inspect'" inspcet
usage_error "unknown command 'nope'" help nope
expect 0 version && grep_in "$OUT" "myrmex "
expect 0 --version && grep_in "$OUT" "myrmex "
for cmd in generate make-model inspect version; do
    expect 0 "$cmd" --help && grep_in "$OUT" "usage: myrmex $cmd"
    expect 0 "$cmd" -h && grep_in "$OUT" "--help"
    expect 0 help "$cmd" && grep_in "$OUT" "usage: myrmex $cmd"
done
usage_error "unexpected argument 'extra'" version extra

# --- make-model usage errors ----------------------------------------------------------------
M=$SCRATCH/never
usage_error "missing argument" make-model
usage_error "too many arguments" make-model "$M" "$M.2"
usage_error "unknown option '--bogus'" make-model "$M" --bogus
usage_error "did you mean --layers?" make-model "$M" --layer 2
usage_error "invalid value 'abc' for --layers" make-model "$M" --layers abc
usage_error "invalid value '2x' for --layers" make-model "$M" --layers 2x
usage_error "--layers must be in [1, 4096], got -1" make-model "$M" --layers -1
usage_error "--layers must be in [1, 4096], got 0" make-model "$M" --layers=0
usage_error "out of range" make-model "$M" --hidden 99999999999
usage_error "option --layers needs a value" make-model "$M" --layers
usage_error "--heads 3 does not divide --hidden 64" make-model "$M" --heads 3 --hidden 64
usage_error "--kv-heads 3 does not divide --heads 4" make-model "$M" --kv-heads 3
usage_error "must be even" make-model "$M" --head-dim 15
usage_error "--shards must be in [1, 21]" make-model "$M" --shards 22
usage_error "--shards must be in [1, 21]" make-model "$M" --shards 0
usage_error "unknown preset 'huge'" make-model "$M" --preset huge
usage_error "unknown --dtype 'f8'" make-model "$M" --dtype f8
usage_error "unknown --arch 'gpt2'" make-model "$M" --arch gpt2
usage_error "expected a finite number" make-model "$M" --rope-theta nan
usage_error "expected a finite number" make-model "$M" --rope-theta inf
usage_error "invalid --rope-scaling 'cubic:2'" make-model "$M" --rope-scaling cubic:2
usage_error "invalid --rope-scaling 'linear:0'" make-model "$M" --rope-scaling linear:0
usage_error "--sliding-window needs --arch mistral" make-model "$M" --sliding-window 64
usage_error "option --tie takes no value" make-model "$M" --tie=yes
usage_error "--tie and --no-tie exclude each other" make-model "$M" --tie --no-tie
checks=$((checks + 1))
[[ ! -e $M ]] || fail "a usage error created $M"

# --- make-model -> inspect ------------------------------------------------------------------
A=$SCRATCH/tiny-a
expect 0 make-model "$A" --preset tiny --seed 42 && grep_in "$OUT" "131,392"
for f in config.json model.safetensors; do
    checks=$((checks + 1))
    [[ -s $A/$f ]] || fail "make-model did not write $f"
done
grep_in "$A/config.json" '"LlamaForCausalLM"'
grep_in "$A/config.json" '"torch_dtype":	"bfloat16"'
expect 0 inspect "$A"
grep_in "$OUT" "LlamaForCausalLM"
grep_in "$OUT" "model.layers.1.mlp.down_proj.weight"
grep_in "$OUT" "[256, 64]"
grep_in "$OUT" "21 tensors, 131392 parameters"
grep_in "$OUT" "KV cache per token"
expect 0 inspect "$A" --json
if command -v python3 >/dev/null; then
    checks=$((checks + 1))
    python3 - "$OUT" <<'EOF' || fail "inspect --json output"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["totals"] == {"tensors": 21, "files": 1, "parameters": 131392, "bytes": 262784}, d["totals"]
assert d["config"]["num_key_value_heads"] == 2 and d["config"]["head_dim"] == 16
assert d["memory"]["kv_bytes_per_token_bf16"] == 2 * 2 * 2 * 16 * 2  # K,V x layers x kv heads x Dh x 2 B
assert d["memory"]["kv_bytes_max_positions_f32"] == 512 * 2 * 2 * 2 * 16 * 4
assert len(d["tensors"]) == 21
EOF
fi

# Same seed, same bytes; another seed, other bytes.
B=$SCRATCH/tiny-b
expect 0 make-model "$B" --seed 42
for f in config.json model.safetensors; do
    checks=$((checks + 1))
    cmp -s "$A/$f" "$B/$f" || fail "same seed, different $f"
done
C=$SCRATCH/tiny-c
expect 0 make-model "$C" --seed 43
checks=$((checks + 1))
! cmp -s "$A/model.safetensors" "$C/model.safetensors" || fail "seeds 42 and 43 gave the same weights"

# The safetensors layout, read independently of the C reader.
if command -v python3 >/dev/null; then
    checks=$((checks + 1))
    python3 - "$A/model.safetensors" <<'EOF' || fail "safetensors layout"
import json, os, struct, sys
path = sys.argv[1]
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
assert n % 8 == 0, n
header = json.loads(data[8:8 + n])
assert header.pop("__metadata__") == {"format": "pt"}
end = 0
for name, t in header.items():  # insertion order = file order
    b, e = t["data_offsets"]
    assert b == end, (name, b, end)
    size = {"BF16": 2, "F16": 2, "F32": 4}[t["dtype"]]
    for d in t["shape"]:
        size *= d
    assert e - b == size, name
    end = e
assert 8 + n + end == os.path.getsize(path)
assert list(header)[0] == "model.embed_tokens.weight" and list(header)[-1] == "lm_head.weight"
EOF
fi

# --- non-empty directory --------------------------------------------------------------------
expect 1 make-model "$A" --seed 1 && grep_in "$ERR" "is not empty (use --force"
checks=$((checks + 1))
cmp -s "$A/model.safetensors" "$B/model.safetensors" || fail "a refused make-model changed the files"
D=$SCRATCH/other
mkdir -p "$D" && echo hello >"$D/notes.txt"
expect 1 make-model "$D" && grep_in "$ERR" "myrmex make-model: error:"
expect 0 make-model "$D" --force
checks=$((checks + 1))
[[ -f $D/notes.txt && -f $D/model.safetensors ]] || fail "--force lost a file or wrote none"
expect 1 make-model "$D/notes.txt" && grep_in "$ERR" "myrmex make-model: error:"

# --- shards ---------------------------------------------------------------------------------
S=$SCRATCH/sharded
expect 0 make-model "$S" --seed 42 --shards 3
for f in model.safetensors.index.json model-00001-of-00003.safetensors model-00002-of-00003.safetensors \
    model-00003-of-00003.safetensors; do
    checks=$((checks + 1))
    [[ -s $S/$f ]] || fail "--shards 3 did not write $f"
done
checks=$((checks + 1))
[[ ! -e $S/model.safetensors ]] || fail "--shards 3 also wrote model.safetensors"
grep_in "$S/model.safetensors.index.json" '"total_size":	262784'
grep_in "$S/model.safetensors.index.json" '"lm_head.weight":	"model-00003-of-00003.safetensors"'
expect 0 inspect "$S" && grep_in "$OUT" "21 in 3 files"
# Sharding changes the files, not the tensors: inspect sees the same table.
"$MYRMEX" inspect "$A" --json | grep -v '"file"\|"dir"\|"files"' >"$SCRATCH/a.json"
"$MYRMEX" inspect "$S" --json | grep -v '"file"\|"dir"\|"files"' >"$SCRATCH/s.json"
checks=$((checks + 1))
cmp -s "$SCRATCH/a.json" "$SCRATCH/s.json" || fail "sharded and single-file models differ"
# --force over a sharded model with a single file removes the stale index and shards.
expect 0 make-model "$S" --seed 42 --force
checks=$((checks + 1))
[[ ! -e $S/model.safetensors.index.json && ! -e $S/model-00001-of-00003.safetensors ]] ||
    fail "--force left the old shards behind"
checks=$((checks + 1))
cmp -s "$A/model.safetensors" "$S/model.safetensors" || fail "--force rewrite differs"

# --- other shapes ---------------------------------------------------------------------------
X=$SCRATCH/mistral
expect 0 make-model "$X" --arch mistral --sliding-window 128 --rope-scaling llama3:8 --dtype f16 --tie \
    --layers 1 --vocab 300
grep_in "$X/config.json" '"MistralForCausalLM"'
grep_in "$X/config.json" '"sliding_window":	128'
grep_in "$X/config.json" '"rope_type":	"llama3"'
expect 0 inspect "$X"
grep_in "$OUT" "MistralForCausalLM"
grep_in "$OUT" "llama3, factor 8"
grep_in "$OUT" "F16"
checks=$((checks + 1))
! grep -q "lm_head" "$OUT" || fail "--tie still wrote lm_head.weight"
L=$SCRATCH/linear
expect 0 make-model "$L" --preset small --rope-scaling linear:2 --dtype f32 --hidden 128 --heads 4 --kv-heads 4
expect 0 inspect "$L" && grep_in "$OUT" "linear, factor 2"
grep_in "$OUT" "heads 4, kv heads 4, head_dim 32"

# --- inspect errors -------------------------------------------------------------------------
usage_error "missing argument" inspect
usage_error "unknown option '--yaml'" inspect "$A" --yaml
expect 1 inspect "$SCRATCH/does-not-exist" && grep_in "$ERR" "myrmex inspect: error:"
E=$SCRATCH/no-weights
mkdir -p "$E" && cp "$A/config.json" "$E/"
expect 1 inspect "$E" && grep_in "$ERR" "myrmex inspect: error:"
T=$SCRATCH/truncated
mkdir -p "$T" && cp "$A/config.json" "$T/" && head -c 1000 "$A/model.safetensors" >"$T/model.safetensors"
expect 1 inspect "$T" && grep_in "$ERR" "myrmex inspect: error:"
# The load error itself, also in a CUDA build on a machine without a GPU (the cleanup after
# a failed load once replaced it with "cannot use CUDA device 0").
expect 1 generate --model "$T" --prompt-ids 1,2 --max-tokens 1 && grep_in "$ERR" "safetensors header extends past the end"

# --- output that cannot be written (a full disk) is an error, not a success ------------------
# full_disk CMD...: myrmex CMD... with standard output on /dev/full exits 1 and says why.
full_disk() {
    checks=$((checks + 1))
    local rc=0
    "$MYRMEX" "$@" >/dev/full 2>"$ERR" || rc=$?
    if [[ $rc -ne 1 ]] || ! grep -q "error: cannot write standard output" "$ERR"; then
        fail "myrmex $* to a full disk exited $rc: $(tail -1 "$ERR")"
    fi
}
if [[ -w /dev/full ]]; then
    full_disk inspect "$A"
    full_disk inspect "$A" --json
    full_disk generate --model "$A" --prompt-ids 1,2,3 --max-tokens 2
    full_disk generate --model "$A" --prompt-ids 1,2,3 --max-tokens 2 --json
    [[ ! -f ${FIXTURES:-}/tokenizers/llama3/tokenizer.json ]] || full_disk tokenize --model "$FIXTURES/tokenizers/llama3" hello
fi

# Fixtures written by Hugging Face tools, when present.
if [[ -n $FIXTURES && -d $FIXTURES ]]; then
    for dir in "$FIXTURES"/*/; do
        [[ -f $dir/config.json ]] || continue
        expect 0 inspect "$dir"
    done
fi

# --- tokenize: usage and runtime errors -----------------------------------------------------
expect 0 tokenize --help && grep_in "$OUT" "usage: myrmex tokenize"
expect 0 help tokenize && grep_in "$OUT" "--decode IDS"
usage_error "--model is required" tokenize hello
usage_error "give TEXT or --decode IDS, not both" tokenize --model "$M" --decode 1 hello
usage_error "--skip-special applies to --decode" tokenize --model "$M" --skip-special hello
usage_error "--add-special applies to encoding" tokenize --model "$M" --decode 1 --add-special
usage_error "--repeat must be >= 1" tokenize --model "$M" --repeat 0 hello
usage_error "invalid value '1,x' for --decode" tokenize --model "$M" --decode 1,x
usage_error "too many arguments" tokenize --model "$M" one two
# A directory without tokenizer.json: exit 1 naming the file.
expect 1 tokenize --model "$A" hello
grep_in "$ERR" "myrmex tokenize: error:"
grep_in "$ERR" "tokenizer.json"

# --- generate: prompt usage errors ----------------------------------------------------------
usage_error "--prompt or --prompt-ids is required" generate --model "$A"
usage_error "give --prompt or --prompt-ids, not both" generate --model "$A" --prompt hi --prompt-ids 1
usage_error "--chat needs --prompt" generate --model "$A" --prompt-ids 1 --chat
usage_error "--system needs --chat" generate --model "$A" --prompt hi --system be-nice
usage_error "--chat-template needs --chat" generate --model "$A" --prompt hi --chat-template chatml
usage_error "unknown --chat-template 'vicuna' (one of llama-2, llama-3, mistral, chatml)" \
    generate --model "$A" --prompt hi --chat --chat-template vicuna
# Text needs a tokenizer; ids do not, and without one print no text.
expect 1 generate --model "$A" --prompt hi --max-tokens 2
grep_in "$ERR" "myrmex generate: error:"
grep_in "$ERR" "tokenizer.json"
expect 0 generate --model "$A" --prompt-ids 1,2,3 --max-tokens 2 --json
checks=$((checks + 1))
! grep -q '"text"' "$OUT" || fail "generate printed text without a tokenizer"

# --- tokenizer fixtures (tests/make_tokenizer_fixtures.py): round trips, JSON, bad ids -------
TOKS=${FIXTURES:+$FIXTURES/tokenizers}
if [[ -n $TOKS && -d $TOKS ]] && command -v python3 >/dev/null; then
    TEXT=$'Hello world! Grüße, 世界 🎉\tcafé  "quoted" \\ back\nnew line  '
    for dir in "$TOKS"/*/; do
        [[ -f $dir/tokenizer.json ]] || continue
        name=$(basename "$dir")
        expect 0 tokenize --model "$dir" "$TEXT"
        ids=$(cat "$OUT")
        checks=$((checks + 1))
        [[ $ids =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "$name: tokenize printed '$ids', not comma-separated ids"
        # Standard input, read as bytes, gives the same ids.
        checks=$((checks + 1))
        [[ $(printf '%s' "$TEXT" | "$MYRMEX" tokenize --model "$dir") == "$ids" ]] ||
            fail "$name: ids from standard input differ from ids of the argument"
        # Decode: the exact text with --json; the text and a newline without.
        expect 0 tokenize --model "$dir" --decode "$ids" --json
        checks=$((checks + 1))
        python3 - "$OUT" "$TEXT" "$ids" <<'PY' || fail "$name: --decode --json round trip"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d["text"] == sys.argv[2], (d["text"], sys.argv[2])
assert d["ids"] == [int(x) for x in sys.argv[3].split(",")], d["ids"]
PY
        expect 0 tokenize --model "$dir" --decode "$ids"
        checks=$((checks + 1))
        cmp -s "$OUT" <(printf '%s\n' "$TEXT") || fail "$name: plain --decode is not the text and a newline"
        expect 0 tokenize --model "$dir" --json "$TEXT"
        checks=$((checks + 1))
        python3 - "$OUT" "$TEXT" "$ids" <<'PY' || fail "$name: tokenize --json"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert d == {"ids": [int(x) for x in sys.argv[3].split(",")], "text": sys.argv[2]}, d
PY
        # --add-special puts bos (when the tokenizer adds one) before the same ids; --skip-special
        # decodes them back to the text.
        expect 0 tokenize --model "$dir" --add-special "$TEXT"
        special=$(cat "$OUT")
        checks=$((checks + 1))
        [[ $special == *"$ids"* ]] || fail "$name: --add-special changed the text's own ids"
        expect 0 tokenize --model "$dir" --decode "$special" --skip-special --json
        checks=$((checks + 1))
        python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["text"] == sys.argv[2]' "$OUT" "$TEXT" ||
            fail "$name: --skip-special did not drop the special tokens"
        # Any bytes on standard input: NUL and invalid UTF-8 (read as U+FFFD) still give JSON.
        printf 'a\0b\xff\xfe c' | "$MYRMEX" tokenize --model "$dir" --json >"$OUT" 2>"$ERR"
        checks=$((checks + 1))
        python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["text"] == "a\0b\ufffd\ufffd c"' "$OUT" ||
            fail "$name: binary standard input"
        # Bad ids: exit 1 with the tokenizer's error.
        expect 1 tokenize --model "$dir" --decode "${ids%%,*},99999999"
        grep_in "$ERR" "myrmex tokenize: error:"
        expect 1 tokenize --model "$dir" --decode -1
        grep_in "$ERR" "myrmex tokenize: error:"
        # --repeat: one bench line on stderr, the ids unchanged on stdout.
        expect 0 tokenize --model "$dir" --repeat 3 "$TEXT"
        grep_in "$ERR" "bench: op=encode bytes="
        grep_in "$ERR" "repeat=3"
        grep_in "$ERR" "MB/s="
        grep_in "$ERR" "tokens/s="
        checks=$((checks + 1))
        [[ $(cat "$OUT") == "$ids" ]] || fail "$name: --repeat changed the ids"
    done

    # --- generate --prompt end to end: a random model with the tokenizer's vocabulary -----
    # vocab_size = the tokenizer's highest id + 1, so every id the model samples decodes.
    vocab_of() {
        python3 -c 'import json,sys
t = json.load(open(sys.argv[1]))
print(max(list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]) + 1)' "$1/tokenizer.json"
    }
    # model_with NAME DIR: make-model DIR with NAME's vocabulary and copy the tokenizer files in.
    model_with() {
        expect 0 make-model "$2" --preset tiny --seed 7 --vocab "$(vocab_of "$TOKS/$1")"
        for f in tokenizer.json tokenizer_config.json generation_config.json; do
            [[ ! -f $TOKS/$1/$f ]] || cp "$TOKS/$1/$f" "$2/"
        done
    }
    # count_ids: the number of comma-separated ids tokenize printed last.
    count_ids() { tr ',' '\n' <"$OUT" | grep -c .; }

    for name in llama2 llama3; do
        [[ -f $TOKS/$name/tokenizer.json ]] || continue
        G=$SCRATCH/gen-$name
        model_with "$name" "$G"
        expect 0 generate --model "$G" --prompt "hello" --max-tokens 4 --json
        cp "$OUT" "$SCRATCH/gen.json"
        expect 0 tokenize --model "$G" --add-special "hello"
        n_hello=$(count_ids)
        checks=$((checks + 1))
        python3 - "$SCRATCH/gen.json" "$n_hello" <<'PY' || fail "$name: generate --prompt --json"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
assert isinstance(d["text"], str), d
assert d["prompt_tokens"] == int(sys.argv[2]), (d["prompt_tokens"], sys.argv[2])  # bos added once
assert 1 <= d["completion_tokens"] <= 4 and len(d["output_ids"]) == d["completion_tokens"]
PY
        expect 0 generate --model "$G" --prompt "hello" --max-tokens 4
        grep_in "$OUT" "text: "
        grep_in "$OUT" "output_ids: "
        # Generation stops at the tokenizer's eos ids (generation_config.json), not only
        # config.json's: make the first greedy token an eos id and it stops there.
        first=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output_ids"][0])' "$SCRATCH/gen.json")
        printf '{"eos_token_id": [%s]}\n' "$first" >"$G/generation_config.json"
        expect 0 generate --model "$G" --prompt "hello" --max-tokens 4 --json
        grep_in "$OUT" '"finish_reason":"stop"'
        grep_in "$OUT" '"completion_tokens":1'
        expect 0 generate --model "$G" --prompt "hello" --max-tokens 4 --json --ignore-eos
        grep_in "$OUT" '"completion_tokens":4'
    done

    # --- generate --chat ------------------------------------------------------------------
    # llama3's tokens name the family; the prompt is the rendered template with one bos.
    if [[ -d $SCRATCH/gen-llama3 ]]; then
        G=$SCRATCH/gen-llama3
        expect 0 generate --model "$G" --prompt "hello" --chat --system "Be brief." --max-tokens 2 --json
        grep_in "$OUT" '"chat_template":"llama-3"'
        cp "$OUT" "$SCRATCH/chat.json"
        expect 0 tokenize --model "$G" "$(printf '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nX')"
        n_chat=$(($(count_ids) - 1)) # without the X that keeps $(...) from eating the last newlines
        checks=$((checks + 1))
        python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); assert d["prompt_tokens"] == int(sys.argv[2]), d' \
            "$SCRATCH/chat.json" "$n_chat" || fail "llama3 --chat prompt is not the rendered template"
        expect 1 generate --model "$G" --prompt "hello" --chat --chat-template chatml --max-tokens 2
        grep_in "$ERR" "chat template chatml writes <|im_start|>, but the tokenizer has no such token"
    fi
    # llama2's plain <s></s> vocabulary does not tell llama-2 from mistral: it must be named,
    # or read from a chat template in the directory.
    if [[ -d $SCRATCH/gen-llama2 ]]; then
        G=$SCRATCH/gen-llama2
        expect 1 generate --model "$G" --prompt "hello" --chat --max-tokens 2
        grep_in "$ERR" "name one with --chat-template"
        expect 0 generate --model "$G" --prompt "hello" --chat --chat-template llama-2 --max-tokens 2 --json
        grep_in "$OUT" '"chat_template":"llama-2"'
        printf '%s' "{{ bos_token }}[INST] <<SYS>> {{ messages }}" >"$G/chat_template.jinja"
        expect 0 generate --model "$G" --prompt "hello" --chat --max-tokens 2 --json
        grep_in "$OUT" '"chat_template":"llama-2"'
        printf '%s' "{% for m in messages %}<start_of_turn>{% endfor %}" >"$G/chat_template.jinja"
        expect 1 generate --model "$G" --prompt "hello" --chat --max-tokens 2
        grep_in "$ERR" "its chat template is none of the built-in families"
    fi
else
    echo "test_cli: tokenizer fixtures or python3 missing; tokenizer CLI tests skipped" >&2
fi

# --- generate --prompts FILE: many prompts through the engine at once ----------------------
P=$SCRATCH/prompts.jsonl
usage_error "give --prompts or a single prompt, not both" generate --model "$A" --prompts "$P" --prompt-ids 1
usage_error "--prefix-cache must be on or off" generate --model "$A" --prompt-ids 1 --prefix-cache maybe
usage_error "--graphs must be on or off" generate --model "$A" --prompt-ids 1 --graphs 1
usage_error "--kv-blocks must be >= 1" generate --model "$A" --prompt-ids 1 --kv-blocks 0
usage_error "--kv-fraction must be in (0, 1]" generate --model "$A" --prompt-ids 1 --kv-fraction 1.5
usage_error "give --kv-blocks or --kv-fraction, not both" generate --model "$A" --prompt-ids 1 --kv-blocks 4 --kv-fraction 0.5
usage_error "--max-seqs must be >= 1" generate --model "$A" --prompt-ids 1 --max-seqs 0
usage_error "--max-batched-tokens must be >= 1" generate --model "$A" --prompt-ids 1 --max-batched-tokens 0
usage_error "--block-size must be in [1, 1024]" generate --model "$A" --prompt-ids 1 --block-size 0
expect 1 generate --model "$A" --prompts "$SCRATCH/no-such.jsonl" && grep_in "$ERR" "cannot open"
# Each bad line is named: FILE:LINE.
bad_line() { # bad_line MESSAGE LINE-TEXT
    printf '{"prompt_ids": [1, 2]}\n\n%s\n' "$2" >"$SCRATCH/bad.jsonl"
    expect 1 generate --model "$A" --prompts "$SCRATCH/bad.jsonl"
    grep_in "$ERR" "bad.jsonl:3: $1"
}
bad_line "not a valid JSON value" '{"prompt_ids": [1, 2]'
bad_line "not a JSON object" '[1, 2]'
bad_line 'unknown field "max_new_tokens"' '{"prompt_ids": [1], "max_new_tokens": 3}'
bad_line 'give "prompt" or "prompt_ids" (exactly one)' '{"max_tokens": 3}'
bad_line 'give "prompt" or "prompt_ids" (exactly one)' '{"prompt": "hi", "prompt_ids": [1]}'
bad_line "a field appears twice" '{"prompt_ids": [1], "prompt_ids": [2]}'
bad_line '"prompt_ids" item 1 is not a token id' '{"prompt_ids": [1, -4]}'
bad_line '"max_tokens" must be an integer >= 1' '{"prompt_ids": [1], "max_tokens": 0}'
bad_line '"top_p" must be a number in (0, 1]' '{"prompt_ids": [1], "top_p": 0}'
bad_line '"stop" must be a string or a list' '{"prompt_ids": [1], "stop": 5}'
bad_line "prompt token 9999 (at 1) is not in [0, 256)" '{"prompt_ids": [1, 9999]}'
grep_in "$ERR" "token id out of range"
bad_line "1 prompt + 100000 new tokens exceed the model's context of 512" '{"prompt_ids": [1], "max_tokens": 100000}'
# Text prompts need the model's tokenizer, as --prompt does.
printf '{"prompt": "hello"}\n' >"$SCRATCH/text.jsonl"
expect 1 generate --model "$A" --prompts "$SCRATCH/text.jsonl" && grep_in "$ERR" "tokenizer.json"
# A request larger than the whole KV pool is refused before anything runs.
printf '{"prompt_ids": [1, 2, 3], "max_tokens": 40}\n' >"$SCRATCH/big.jsonl"
expect 1 generate --model "$A" --prompts "$SCRATCH/big.jsonl" --kv-blocks 2 --block-size 4
grep_in "$ERR" "request needs more KV-cache blocks than the whole pool has"
grep_in "$ERR" "big.jsonl:1: 3 prompt + up to 40 new tokens need 11 KV blocks of 4 tokens; the pool has 2"

# Five prompts of different lengths, budgets and sampling; a shared prefix for the cache.
cat >"$P" <<'JSONL'
{"prompt_ids": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], "max_tokens": 7}
{"prompt_ids": [3], "max_tokens": 12, "ignore_eos": true}

{"prompt_ids": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 30], "max_tokens": 5, "top_logprobs": 2}
{"prompt_ids": [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75], "max_tokens": 9, "temperature": 0.8, "top_k": 20, "seed": 11}
{"prompt_ids": [9, 9], "max_tokens": 3, "temperature": 1.0, "top_p": 0.9, "seed": 7, "stop_token_ids": [200]}
JSONL
expect 0 generate --model "$A" --prompts "$P" --json --ignore-eos
cp "$OUT" "$SCRATCH/batched.json"
grep_in "$ERR" "requests:  5 in"
grep_in "$ERR" "tokens/s"
checks=$((checks + 1))
[[ $(wc -l <"$SCRATCH/batched.json") -eq 5 ]] || fail "--prompts --json did not print one line per prompt"
# Every result equals the same prompt run alone (each line's fields override the flags).
if command -v python3 >/dev/null; then
    python3 - "$P" >"$SCRATCH/alone.args" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    d = json.loads(line)
    args = ["--prompt-ids", ",".join(map(str, d["prompt_ids"])), "--max-tokens", str(d["max_tokens"])]
    for k, flag in [("temperature", "--temperature"), ("top_k", "--top-k"), ("top_p", "--top-p"), ("seed", "--seed"),
                    ("top_logprobs", "--top-logprobs")]:
        if k in d:
            args += [flag, str(d[k])]
    print(" ".join(args))
PY
    : >"$SCRATCH/alone.json"
    while read -r -a args; do
        "$MYRMEX" generate --model "$A" --json --ignore-eos "${args[@]}" >>"$SCRATCH/alone.json" 2>"$ERR"
    done <"$SCRATCH/alone.args"
    same_outputs() { # same_outputs FILE WHAT: FILE's results equal the alone runs'
        checks=$((checks + 1))
        python3 - "$SCRATCH/alone.json" "$1" <<'PY' || fail "$2: outputs differ from one prompt at a time"
import json, sys
alone = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(alone) == len(got) == 5, (len(alone), len(got))
for a, g in zip(alone, got):
    for k in ("output_ids", "finish_reason", "prompt_tokens", "completion_tokens"):
        assert a[k] == g[k], (k, a[k], g[k])
    assert a.get("top_logprobs") == g.get("top_logprobs")
    assert set(g["timings"]) == set(a["timings"]), g["timings"]
PY
    }
    same_outputs "$SCRATCH/batched.json" "--prompts"
    # Chunks of one token, two sequences at a time, a pool that forces preemptions, no
    # prefix cache: the same outputs.
    expect 0 generate --model "$A" --prompts "$P" --json --ignore-eos --max-batched-tokens 1 --max-seqs 2
    cp "$OUT" "$SCRATCH/chunked.json"
    same_outputs "$SCRATCH/chunked.json" "--max-batched-tokens 1 --max-seqs 2"
    expect 0 generate --model "$A" --prompts "$P" --json --ignore-eos --block-size 4 --kv-blocks 14 --max-batched-tokens 8
    cp "$OUT" "$SCRATCH/pressure.json"
    same_outputs "$SCRATCH/pressure.json" "--kv-blocks 14"
    grep_in "$ERR" "preemptions"
    expect 0 generate --model "$A" --prompts "$P" --json --ignore-eos --prefix-cache off --block-size 4
    cp "$OUT" "$SCRATCH/nocache.json"
    same_outputs "$SCRATCH/nocache.json" "--prefix-cache off"
    grep_in "$ERR" ", 0 from the prefix cache"
    expect 0 generate --model "$A" --prompts "$P" --json --ignore-eos --graphs off
    cp "$OUT" "$SCRATCH/nographs.json"
    same_outputs "$SCRATCH/nographs.json" "--graphs off"
fi
# Text output: each result under its line number, then the aggregate.
expect 0 generate --model "$A" --prompts "$P" --ignore-eos
grep_in "$OUT" "[0] line 1, 17 prompt tokens"
grep_in "$OUT" "[4] line 6, 2 prompt tokens"
grep_in "$OUT" "finish: length"
grep_in "$OUT" "generated: 36 tokens in"

# Text prompts with a tokenizer: the same text as --prompt, and stop strings.
if [[ -d $SCRATCH/gen-llama3 ]] && command -v python3 >/dev/null; then
    G=$SCRATCH/gen-llama3
    expect 0 generate --model "$G" --prompt "hello world" --max-tokens 12 --ignore-eos --json
    cp "$OUT" "$SCRATCH/one.json"
    printf '{"prompt": "hello world", "max_tokens": 12, "ignore_eos": true}\n{"prompt": "hello", "max_tokens": 3}\n' >"$SCRATCH/t.jsonl"
    expect 0 generate --model "$G" --prompts "$SCRATCH/t.jsonl" --json
    checks=$((checks + 1))
    python3 - "$SCRATCH/one.json" "$OUT" <<'PY' || fail "--prompts text differs from --prompt"
import json, sys
one = json.load(open(sys.argv[1]))
lines = [json.loads(l) for l in open(sys.argv[2])]
assert len(lines) == 2 and lines[0]["output_ids"] == one["output_ids"] and lines[0]["text"] == one["text"], (one, lines)
PY
    # A stop string taken from the middle of that text: the output ends right before it.
    stop=$(python3 -c 'import json,sys; t = json.load(open(sys.argv[1]))["text"]; print(t[len(t)//2:len(t)//2+2])' "$SCRATCH/one.json")
    python3 -c 'import json,sys; print(json.dumps({"prompt": "hello world", "max_tokens": 12, "ignore_eos": True, "stop": [sys.argv[1], "zzzz"]}))' "$stop" >"$SCRATCH/stop.jsonl"
    expect 0 generate --model "$G" --prompts "$SCRATCH/stop.jsonl" --json
    checks=$((checks + 1))
    python3 - "$SCRATCH/one.json" "$OUT" "$stop" <<'PY' || fail "stop string"
import json, sys
one = json.load(open(sys.argv[1]))
got = json.loads(open(sys.argv[2]).read())
stop = sys.argv[3]
want = one["text"][: one["text"].index(stop)]
assert got["finish_reason"] == "stop" and got["text"] == want, (got, want)
assert got["output_ids"] == one["output_ids"][: len(got["output_ids"])]
PY
fi

echo "test_cli: $checks checks, $failures failed" >&2
[[ $failures -eq 0 ]]
