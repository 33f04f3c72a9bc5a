#!/usr/bin/env python3
"""Writes tests/data/gemma3_tokenizer.txt: llama.cpp's token ids for a corpus of strings on Gemma 3's vocabulary.

Needs python3 with llama-cpp-python (built from its PyPI source) and the gguf package
(pip install llama-cpp-python gguf==0.19.0 numpy).

    python3 tests/reference/gen_gemma_tokenizer.py MODEL.gguf [OUT]

Each corpus string is tokenized twice: as plain text with BOS (add_bos=True, special=False: what a user's
text becomes) and as markup without BOS (add_bos=False, special=True: control tokens written in the text are
recognised). Line format: see the header the script writes.
"""
import json
import sys

import gguf
from llama_cpp import Llama


def corpus(special_tokens):
    out = ["", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "a", "A", "Hello", "Hello world", " Hello world",
           "Hello world ", "  Hello  world  ", "Hello\tworld", "Hello\nworld", "Hello\n\nworld\n", "\t\tindent",
           "trailing   ", "   leading", "a  b   c    d     e", "x" * 40, "aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
           " " * 40, "\n" * 40, "\t" * 9, " \t \t \n\r\n", "line1\r\nline2\r\n",
           "The capital of France is", "The quick brown fox jumps over the lazy dog.",
           "It's a truth universally acknowledged, isn't it? I'd say we'll see; they've gone.",
           "Don't stop believing!!!", "e.g. i.e. etc. Mr. Smith vs. Dr. Jones", "CamelCaseIdentifierName",
           "snake_case_identifier_name", "UPPER CASE TEXT", "MiXeD cAsE", "hyphen-ated words--and—dashes–here",
           "\"quoted\" 'single' `backtick` «guillemets» „German“ ‘curly’",
           "0", "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "-42", "+7", "1,000,000", "1e-9",
           "0x1F 0b1010 0o777", "2024-01-31T12:34:56Z", "$19.99 €5 £3 ¥100 ₹50", "100%", "42nd 3rd 1st",
           "https://example.com/path?query=1&b=two#frag", "http://localhost:8080/", "user@example.org",
           "ftp://files.example.net/a/b/c.tar.gz", "www.example.co.uk/index.html",
           "C:\\Program Files\\app.exe", "/usr/local/bin/python3",
           # multilingual
           "日本語のテキストです。", "東京は日本の首都です", "中文文本，包括标点符号。", "我爱北京天安门", "한국어 텍스트입니다.",
           "안녕하세요 세계", "مرحبا بالعالم", "اللغة العربية جميلة.", "नमस्ते दुनिया", "हिन्दी भाषा में पाठ।",
           "Привет, мир!", "Съешь же ещё этих мягких французских булок.", "Ελληνικά κείμενα", "שלום עולם",
           "ภาษาไทย", "Tiếng Việt có dấu", "café naïve résumé façade", "Ærøskøbing Ødegård Åland",
           "Straße Müller Größe", "señor niño año", "Zażółć gęślą jaźń", "İstanbul ığdır", "ﬁ ﬂ ligatures",
           "e\u0301 combining acute", "Ａｂｃ fullwidth １２３", "ẞ ſ ǅ Ǉ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "𐍈 gothic 𓀀 hieroglyph",
           "Mixed English 日本語 and العربية and हिन्दी",
           # emoji
           "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "❤️", "☕ and 🍕", "🤖 robots 🤖", "👩🏾‍💻 coding",
           "🧑‍🤝‍🧑", "1️⃣ 2️⃣ #️⃣", "Emoji at end 🎉", "🎉 Emoji at start",
           # code
           "int main() { return 0; }",
           "#include <vector>\nstd::vector<int> v{1, 2, 3};\nfor (auto& x : v) x *= 2;\n",
           "template <class T>\nconstexpr T square(T x) noexcept { return x * x; }",
           "def f(x):\n    return x ** 2\n\nprint(f(3))\n",
           "class Foo:\n\tdef __init__(self):\n\t\tself.x = None\n",
           "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)",
           '{"key": "value", "n": [1, 2, 3], "nested": {"a": true, "b": null}}',
           '[\n  {\n    "id": 1,\n    "name": "x"\n  }\n]',
           "SELECT * FROM users WHERE id = 42;", "<html><body><p>Hi</p></body></html>",
           "fn main() { println!(\"hi\"); }", "x = a && b || !c; y = a != b; z <= w >= v",
           "// comment\n/* block */\n# hash", "a+=1;b-=2;c*=3;d/=4;", "lambda x: x[::-1]",
           "```python\nprint('hi')\n```", "$ ls -la | grep foo > out.txt 2>&1",
           # special tokens and markup-looking text
           "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>",
           "<start_of_image>", "<end_of_image>", "<unused0>", "<unused99>",
           "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
           "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
           "text<end_of_turn>more text", "<start_of_turn><end_of_turn>", "<bos><bos>", "<eos> after",
           "before <eos>", "  <start_of_turn>  ", "<start_of_turn", "start_of_turn>", "< start_of_turn >",
           "<START_OF_TURN>", "<<start_of_turn>>", "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>",
           "<|begin_of_text|><|start_header_id|>user<|end_header_id|>", "<s> </s>",
           "<0x41>", "<0xFF>", "<0x0A>", "<>", "</>", "< >", "<<<>>>", "[INST] hi [/INST]",
           # malformed-looking text (valid UTF-8)
           "\ufffd", "\ufffd\ufffd", "a\ufffdb", "\x00", "a\x00b", "\x01\x02\x03\x1f", "\x7f", "\u0080\u009f",
           "\u200b zero width", "\u200d", "\ufeffBOM", "\u00a0nbsp\u00a0", "\u2028\u2029", "\u202eright-to-left",
           "\U0010ffff", "\ue000 private", "\u2581", "\u2581\u2581x", "▁leading block", "&amp; &lt; &#x27;",
           "%20%3D%3F", "\\n\\t\\\\", "\\u0041", "!!!???...,,,;;;", "~!@#$%^&*()_+`-=[]{}|;':\",./<>?",
           "....................", "-----", "=====", "*****", "_____", "a.b.c.d", "a/b\\c|d",
           "repeated repeated repeated repeated", "ab" * 30, "🙂" * 12, "あ" * 20,
           "A very long sentence that goes on and on, with many clauses, commas, and words, just to check "
           "that a long input tokenizes the same way in both implementations without any surprises at all.",
           ]
    # every control and user-defined token's text on its own and inside words
    for t in special_tokens:
        out.append(t)
        out.append("x" + t + "y")
    seen = set()
    uniq = []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    model = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) > 2 else "tests/data/gemma3_tokenizer.txt"
    r = gguf.GGUFReader(model)
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    # a sample of the file's special tokens: the first 20 control, every user-defined except whitespace runs
    control = [toks[i] for i in range(len(toks)) if types[i] == 3][:20]
    control += [t for t in ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>") if t in toks]
    user = [toks[i] for i in range(len(toks)) if types[i] == 4 and toks[i].strip() != ""][:24]
    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    texts = corpus(list(dict.fromkeys(control + user)))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("# Gemma 3 270M (gemma-3-270m-q4_k_m.gguf): llama.cpp's tokens for a corpus "
                "(tests/reference/gen_gemma_tokenizer.py, llama-cpp-python %s)\n" % __import__("llama_cpp").__version__)
        f.write("# one JSON object per line: text_hex (UTF-8 bytes, hex), add_bos, special (llama.cpp tokenize's\n"
                "# flags), ids, decoded_hex (llama.cpp detokenize of ids without BOS, special=False, hex)\n")
        n = 0
        for s in texts:
            b = s.encode("utf-8")
            for add_bos, special in ((True, False), (False, True)):
                ids = llm.tokenize(b, add_bos=add_bos, special=special)
                body = ids[1:] if add_bos and ids[:1] == [llm.token_bos()] else ids
                dec = llm.detokenize(body, special=False)
                f.write(json.dumps({"text_hex": b.hex(), "add_bos": add_bos, "special": special, "ids": ids,
                                    "decoded_hex": dec.hex()}, ensure_ascii=True) + "\n")
                n += 1
    print("%d strings, %d cases -> %s" % (len(texts), n, out_path))


if __name__ == "__main__":
    main()
