#!/usr/bin/env python3
"""Generates piecrust's llama.cpp reference data for SmolLM2-135M-Instruct (Q4_1 GGUF).

Runs llama.cpp (through llama-cpp-python) on the model file and records, as JSON:
  * token ids of a corpus of >= 200 varied strings (parse_special on, no BOS);
  * greedy continuations of 20 prompts, 32 tokens each (stopping early at an end-of-generation token);
  * the top-5 logits of the first step of each prompt.
tests/unit/test_model_llama_cpp.cpp checks piecrust against the file without llama.cpp installed.

usage: generate_reference.py --model FILE.gguf --out reference.json [--threads N]
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama


def corpus():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t\tx",
        "Hello", "Hello, world!", "hello world", "HELLO WORLD", "Hello  world", "Hello   world ", " Hello",
        "The quick brown fox jumps over the lazy dog.",
        "I'm", "I'M", "you're", "they've", "she'd", "we'll", "it's", "don't", "Don'T", "'s 't 're",
        "naïve café résumé", "Ångström", "straße", "Ελληνικά", "Русский текст", "日本語のテキスト", "中文文本测试",
        "한국어 텍스트", "العربية", "עברית", "हिन्दी", "ภาษาไทย", "Tiếng Việt", "ñandú",
        "🍕", "🍕🍕🍕", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "I ❤️ NY", "😀 😃 😄", "→ ← ↑ ↓", "∑ ∫ √ ∞ ≈ ≠",
        "0", "1", "12", "123", "1234", "12345", "123456789", "3.14159", "-42", "1,000,000", "1e-10", "0x1F",
        "2024-11-22", "12:34:56", "$100.00", "50%", "+1 (555) 123-4567", "v1.2.3", "١٢٣", "①②③", "Ⅻ",
        "def f(x):\n    return x * 2\n", "int main() { return 0; }", "for (int i = 0; i < n; ++i) {}",
        "if x == 1 and y != 2:", "a += b; c -= d;", "std::vector<int> v{1, 2, 3};", "#include <stdio.h>",
        "print(\"hello\")", "console.log('hi');", "SELECT * FROM t WHERE id = 1;", "<div class=\"a\">x</div>",
        "{\"key\": [1, 2, {\"n\": null}]}", "https://example.com/path?q=1&r=2#frag", "user@example.com",
        "C:\\Windows\\System32", "/usr/local/bin", "~/.bashrc", "`code`", "**bold** _it_", "# Title\n\n- item",
        "    indented", "\tTabbed\tline", "trailing spaces   ", "a\n\n\nb", "x  \n  y", "...", "!!!", "???!",
        "—", "–", "“quoted”", "‘single’", "«guillemets»", "(parens) [brackets] {braces}", "a/b\\c|d",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>assistant\nSure!<|im_end|>", "text<|im_end|>more", "<|im_start|><|im_end|>",
        "<repo_name>x<file_sep>y", "<|im_start", "im_end|>", "< |im_start| >",
        "ThisIsCamelCase", "snake_case_name", "kebab-case-name", "SCREAMING_CASE", "mIxEd CaSe",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ababababababababab", "zzz", "qwertyuiop",
        "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "To be, or not to be, that is the question.", "E = mc^2", "x_1^2 + y_1^2 = r^2",
        "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "soft\u00adhyphen", "e\u0301 (combining)",
        "\u3000ideographic space", "line\u2028separator", "bell\u0007char", "null\u0001ish",
    ]
    for n in range(1, 9):
        s.append(" " * n + "x")
        s.append("x" + " " * n + "y")
        s.append("\n" * n)
    for n in [7, 42, 256, 1000, 65535, 1234567, 31415926535]:
        s.append(str(n))
        s.append(f"The answer is {n}.")
    words = ["model", "token", "piecrust", "inference", "kernel", "attention", "page", "cache"]
    for i, w in enumerate(words):
        s.append(f"{w} {words[(i + 3) % len(words)]} {i * 17}")
        s.append(w.upper() + "!" + w.capitalize())
    s += [f"Item {i}: {'★' * (i % 4)} {chr(0x4e00 + i * 37)}" for i in range(12)]
    s += [f"<|im_start|>{r}\n{t}<|im_end|>\n" for r, t in
          [("system", "You are helpful."), ("user", "What's 2+2?"), ("assistant", "4")]]
    s += ["  ".join(["x"] * k) for k in range(2, 6)]
    s += ["\t".join(["col"] * k) for k in range(2, 5)]
    out, seen = [], set()
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


PROMPTS = [
    chat("What is the capital of France?"),
    chat("Write a haiku about the sea."),
    chat("Explain photosynthesis in one sentence."),
    chat("List three prime numbers."),
    chat("Translate 'good morning' into Spanish."),
    chat("What is 12 times 12?"),
    chat("Give me a name for a cat."),
    chat("How do I reverse a list in Python?"),
    chat("Who wrote Romeo and Juliet?"),
    chat("Tell me a fun fact about octopuses."),
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "1, 2, 3, 4, 5,",
    "Q: What is the boiling point of water?\nA:",
    "In 1969, humans first",
    "import numpy as np\n",
    "The best way to learn a language is",
    "Dear Sir or Madam,\n\nI am writing to",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--kv", choices=["f32", "f16"], default="f32",
                    help="KV cache type (f32: piecrust's llama_cpp_attention reproduces it bit for bit)")
    args = ap.parse_args()

    kv_type = 0 if args.kv == "f32" else 1  # GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1
    llm = Llama(model_path=args.model, n_ctx=1024, n_batch=512, n_threads=args.threads, logits_all=False,
                flash_attn=False, verbose=False, seed=0, type_k=kv_type, type_v=kv_type)
    vocab = llm.n_vocab()
    eog = {i for i in range(vocab) if llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), i)}

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(vocab,)).copy()

    tok = [{"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)} for t in corpus()]

    greedy = []
    for p in PROMPTS:
        ids = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        logits = last_logits()
        top = np.argsort(-logits, kind="stable")[:5]
        top5 = [[int(i), float(logits[i])] for i in top]
        out = []
        for _ in range(args.tokens):
            nxt = int(np.argmax(logits))
            out.append(nxt)
            if nxt in eog:
                break
            llm.eval([nxt])
            logits = last_logits()
        greedy.append({"prompt": p, "prompt_ids": ids, "top5": top5, "ids": out,
                       "text": llm.detokenize(out).decode("utf-8", errors="replace")})
        print(f"[{len(greedy):2}] {greedy[-1]['text']!r}", file=sys.stderr)

    h = hashlib.sha256()
    with open(args.model, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    ref = {
        "generator": "tests/conformance/llama_cpp/generate_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "model": {"file": os.path.basename(args.model), "sha256": h.hexdigest()},
        "settings": {"add_bos": False, "parse_special": True, "kv_cache": args.kv, "flash_attn": False,
                     "threads": args.threads, "greedy_tokens": args.tokens},
        "tokenize": tok,
        "greedy": greedy,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(tok)} strings, {len(greedy)} prompts", file=sys.stderr)


if __name__ == "__main__":
    main()
