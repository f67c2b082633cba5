#!/usr/bin/env python3
"""Writes tests/fixtures/chat/*.jsonl: conversations rendered by Hugging Face transformers'
apply_chat_template with the real Jinja chat templates of four families, the reference that
runtime/chat_template.c must match byte for byte (tests/test_chat_template.c).

    python3 tests/make_chat_fixtures.py [OUT_DIR]     # default tests/fixtures/chat

Needs transformers and tokenizers (no torch, nothing downloaded): apply_chat_template needs a
tokenizer object, so a tiny word-level one is built in memory with each family's bos/eos.

One file per family, one JSON object per line:
  {"name", "source", "messages": [{"role", "content"}], "add_generation_prompt",
   "text": <the rendering>}                                   when both render it
  {..., "error": <why>, "error_source": "template" | "myrmex"} when it must be refused:
   "template" = the Jinja template raises (myrmex must refuse too); "myrmex" = the template
   renders something (kept in "reference") but myrmex refuses on purpose (see chat_template.h).
detect.jsonl: {"name", "template", "family"}: chat_family_detect on real template strings.
"""
import json
import os
import sys

import jinja2
import transformers
from tokenizers import Tokenizer, models

# --- the templates, verbatim from each model's tokenizer_config.json ----------------------

# meta-llama/Llama-2-7b-chat-hf (and -13b, -70b)
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# meta-llama/Meta-Llama-3-8B-Instruct (and -70B)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# mistralai/Mistral-7B-Instruct-v0.1 and -v0.2 (the same template; updated by Mistral in 2024)
MISTRAL = (
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an "
    "initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"
)

# ChatML as in teknium/OpenHermes-2.5-Mistral-7B (transformers' former default template)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Only for detection: older or related templates.
MISTRAL_V01_2023 = (  # mistralai/Mistral-7B-Instruct-v0.1 before the 2024 update
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
MIXTRAL_2023 = (  # mistralai/Mixtral-8x7B-Instruct-v0.1
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA = (  # google/gemma-7b-it: none of the four families
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

FAMILIES = {
    # family: (template, source, bos, eos)
    "llama-2": (LLAMA2, "meta-llama/Llama-2-7b-chat-hf", "<s>", "</s>"),
    "llama-3": (LLAMA3, "meta-llama/Meta-Llama-3-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": (MISTRAL, "mistralai/Mistral-7B-Instruct-v0.1 / v0.2", "<s>", "</s>"),
    "chatml": (CHATML, "ChatML (teknium/OpenHermes-2.5-Mistral-7B)", "<s>", "<|im_end|>"),
}

DETECT = [
    ("Llama-2-chat", LLAMA2, "llama-2"),
    ("Meta-Llama-3-Instruct", LLAMA3, "llama-3"),
    ("Mistral-7B-Instruct-v0.1/v0.2 (2024)", MISTRAL, "mistral"),
    ("Mistral-7B-Instruct-v0.1 (2023)", MISTRAL_V01_2023, "mistral"),
    ("Mixtral-8x7B-Instruct-v0.1", MIXTRAL_2023, "mistral"),
    ("ChatML", CHATML, "chatml"),
    ("gemma-7b-it", GEMMA, "unknown"),
    ("empty string", "", "unknown"),
]


def tokenizer_for(bos, eos):
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(["<unk>", bos, eos, "hello"]))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token="<unk>")


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


SYS = "You are a helpful assistant."
CASES = [
    ("system+user", msgs(("system", SYS), ("user", "What is the capital of France?"))),
    ("user only", msgs(("user", "Hello!"))),
    ("multi-turn", msgs(("system", SYS), ("user", "Hi"), ("assistant", "Hello, how can I help?"),
                        ("user", "Tell me a joke."))),
    ("multi-turn ending with assistant", msgs(("user", "2+2?"), ("assistant", "4"), ("user", "and 3+3?"),
                                              ("assistant", "6"))),
    ("unicode", msgs(("system", "Réponds en français. 日本語もOK"), ("user", "Grüße, 世界! 🎉 naïve café — “quotes”"))),
    ("unicode whitespace around", msgs(("system", "\u3000\u00a0 sys \u2028"), ("user", " \t\n hi\u2003there \u0085\n"),
                                       ("assistant", "\u202f ok \x1c"), ("user", "\u200b zero-width is not space\u200b"))),
    ("empty user", msgs(("user", ""))),
    ("empty system and user", msgs(("system", ""), ("user", ""))),
    ("empty system", msgs(("system", ""), ("user", "hi"))),
    ("system, whitespace-only user", msgs(("system", "S"), ("user", "  \n "))),
    ("empty assistant", msgs(("user", "hi"), ("assistant", ""), ("user", "again"))),
    ("padded content", msgs(("user", "   lots of space   \n\n"), ("assistant", "  reply  "), ("user", "\nq\n"))),
    ("multi-line", msgs(("system", "line 1\nline 2\n\nline 4"), ("user", "a\nb\r\nc"))),
    ("special-token text in content", msgs(("user", "say <|im_end|> and [INST] and </s> and <|eot_id|>"))),
    ("long", msgs(("user", "word " * 300))),
    # Refused by the templates or by myrmex.
    ("assistant first", msgs(("assistant", "I start"), ("user", "hi"))),
    ("two users", msgs(("user", "a"), ("user", "b"))),
    ("system after user", msgs(("user", "a"), ("system", "late"))),
    ("system in the middle", msgs(("user", "a"), ("assistant", "b"), ("system", "mid"), ("user", "c"))),
    ("two systems", msgs(("system", "one"), ("system", "two"), ("user", "hi"))),
    ("unknown role", msgs(("user", "a"), ("tool", "result"))),
    ("system only", msgs(("system", SYS))),
]


def myrmex_refuses(family, messages):
    """The role rules of chat_render (chat_template.h), for marking deliberate differences."""
    roles = [m["role"] for m in messages]
    if not roles or any(r not in ("system", "user", "assistant") for r in roles):
        return "roles must be system, user or assistant"
    if family in ("llama-2", "mistral"):
        rest = roles[1:] if roles[0] == "system" else roles
        if not rest:
            return "a user message is needed after the system message"
        for i, r in enumerate(rest):
            if r != ("user" if i % 2 == 0 else "assistant"):
                return "roles must alternate user/assistant after an optional first system message"
    return None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "chat")
    os.makedirs(out, exist_ok=True)
    for family, (template, source, bos, eos) in FAMILIES.items():
        tok = tokenizer_for(bos, eos)
        rows = []
        for name, messages in CASES:
            for gen in (False, True):
                row = {"name": name, "source": source, "messages": messages, "add_generation_prompt": gen}
                try:
                    text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                   add_generation_prompt=gen)
                except jinja2.exceptions.TemplateError as e:
                    text, err = None, str(e)
                refuse = myrmex_refuses(family, messages)
                if text is None:
                    # Every message the template refuses, myrmex refuses too.
                    assert refuse, (family, name, err)
                    row.update(error=err, error_source="template")
                elif refuse:
                    row.update(error=refuse, error_source="myrmex", reference=text)
                else:
                    row["text"] = text
                rows.append(row)
        path = os.path.join(out, family + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{path}: {len(rows)} cases")
    path = os.path.join(out, "detect.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for name, template, family in DETECT:
            f.write(json.dumps({"name": name, "template": template, "family": family}, ensure_ascii=False) + "\n")
    print(f"{path}: {len(DETECT)} templates")


if __name__ == "__main__":
    main()
