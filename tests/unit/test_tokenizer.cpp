// Tokenizer: synthetic gpt2 and SentencePiece vocabularies, the real SmolLM2 vocabulary, streaming decode.

#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/model_paths.hpp>
#include <piecrust/model/streaming_detokenizer.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <catch2/catch.hpp>

#include <filesystem>

using namespace piecrust;

namespace {

// A byte-level vocabulary: the 256 byte characters, a few merges and two special tokens.
Tokenizer tiny_gpt2(std::string pre = "smollm") {
  TokenizerSpec s;
  s.model = TokenizerModel::gpt2;
  s.pre = std::move(pre);
  s.tokens = {"<|endoftext|>", "<|im_start|>"};
  s.types = {TokenType::control, TokenType::control};
  auto const& bl = detail::ByteLevel::get();
  for (int b = 0; b < 256; ++b) {
    s.tokens.push_back(bl.byte_to_text[b]);
    s.types.push_back(TokenType::normal);
  }
  for (std::string m : {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"}) {
    s.merges.push_back(m);
    auto const sp = m.find(' ');
    s.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
    s.types.push_back(TokenType::normal);
  }
  s.eos = 0;
  return Tokenizer(std::move(s));
}

std::vector<TokenId> ids(Tokenizer const& t, std::initializer_list<char const*> texts) {
  std::vector<TokenId> out;
  for (auto const* x : texts) out.push_back(t.find(x).value());
  return out;
}

std::string stream_all(Tokenizer const& t, std::vector<TokenId> const& v, std::vector<std::string>* chunks = nullptr) {
  StreamingDetokenizer d(t);
  std::string out;
  for (auto id : v) {
    auto s = d.push(id);
    if (chunks) chunks->push_back(s);
    out += s;
  }
  return out + d.flush();
}

}  // namespace

TEST_CASE("tokenizer: byte-level BPE merges by rank", "[tokenizer]") {
  auto const t = tiny_gpt2();
  CHECK(t.encode("hello") == ids(t, {"hello"}));
  CHECK(t.encode("hello wo") == ids(t, {"hello", "Ġwo"}));
  CHECK(t.encode("hel") == ids(t, {"he", "l"}));
  // smollm splits every digit
  CHECK(t.encode("123") == ids(t, {"1", "2", "3"}));
  // specials only with parse_special
  CHECK(t.encode("<|im_start|>he", {.parse_special = true}) == std::vector<TokenId>{1, t.find("he").value()});
  CHECK(t.encode("<|im_start|>", {}).size() == 12);
  CHECK(t.decode(t.encode("<|im_start|>he", {.parse_special = true})) == "he");
  CHECK(t.decode(t.encode("<|im_start|>he", {.parse_special = true}), {.special = true}) == "<|im_start|>he");
  // every byte string round-trips, including invalid UTF-8
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes += static_cast<char>(b);
  CHECK(t.decode(t.encode(bytes)) == bytes);
  CHECK_THROWS_AS(t.token_to_bytes(100000), OutOfRange);
  CHECK_THROWS_AS(t.token_to_bytes(-1), OutOfRange);
}

TEST_CASE("tokenizer: pre-tokenizer regexes", "[tokenizer]") {
  auto const t = tiny_gpt2("gpt2");
  // "\s+(?!\S)": a run of spaces before a word leaves its last space to the word.
  auto const v = t.encode("a   b");
  std::vector<std::string> pieces;
  for (auto id : v) pieces.push_back(t.token_to_bytes(id));
  CHECK(pieces == std::vector<std::string>{"a", " ", " ", " ", "b"});
  CHECK_THROWS_AS(tiny_gpt2("no-such-pre"), Unsupported);
  for (auto pre : {"llama3", "qwen2", "default", "gpt-2", "smollm"}) {
    auto const u = tiny_gpt2(pre);
    std::string const s = "Héllo wörld 12345 — 你好!!  \n\n  x 🍕's";
    CHECK(u.decode(u.encode(s)) == s);
  }
}

TEST_CASE("tokenizer: SentencePiece BPE with byte fallback", "[tokenizer]") {
  TokenizerSpec s;
  s.model = TokenizerModel::llama;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.types = {TokenType::unknown, TokenType::control, TokenType::control};
  s.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    s.tokens.push_back(buf);
    s.types.push_back(TokenType::byte);
    s.scores.push_back(0);
  }
  std::vector<std::pair<std::string, float>> const pieces = {
      {"\xe2\x96\x81", -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"he", -3}, {"ll", -4}, {"llo", -5},
      {"hello", -6},       {"\xe2\x96\x81hello", -7}};
  for (auto const& [p, sc] : pieces) {
    s.tokens.push_back(p);
    s.types.push_back(TokenType::normal);
    s.scores.push_back(sc);
  }
  s.bos = 1;
  s.eos = 2;
  s.unk = 0;
  s.add_bos = true;
  Tokenizer const t(std::move(s));
  auto const v = t.encode("hello hello", {.add_special = true});
  REQUIRE(v.size() == 3);
  CHECK(v[0] == 1);
  CHECK(t.token_text(v[1]) == "\xe2\x96\x81hello");
  CHECK(t.token_text(v[2]) == "\xe2\x96\x81hello");
  CHECK(t.decode(v) == "hello hello");
  // 'é' is not in the vocabulary: two byte tokens
  auto const w = t.encode("é");
  REQUIRE(w.size() == 3);
  CHECK(t.token_type(w[1]) == TokenType::byte);
  CHECK(t.decode(w) == "é");
  CHECK(stream_all(t, w) == "é");
}

TEST_CASE("tokenizer: the streaming detokenizer never splits a UTF-8 character", "[tokenizer]") {
  auto const t = tiny_gpt2();
  std::string const s = "a😀b€c";
  auto const v = t.encode(s);  // one token per byte: the emoji is 4 tokens
  std::vector<std::string> chunks;
  CHECK(stream_all(t, v, &chunks) == s);
  for (auto const& c : chunks) {
    // every emitted chunk is complete UTF-8
    CHECK(detail::utf8_incomplete_tail(c) == 0);
  }
  CHECK(chunks[1].empty());
  CHECK(chunks[4] == "😀");
}

TEST_CASE("tokenizer: bad specs are FormatErrors", "[tokenizer]") {
  TokenizerSpec s;
  CHECK_THROWS_AS(Tokenizer(s), FormatError);
  s.tokens = {"a", "b"};
  s.types = {TokenType::normal};
  CHECK_THROWS_AS(Tokenizer(s), FormatError);
  s.types.clear();
  s.eos = 5;
  CHECK_THROWS_AS(Tokenizer(s), FormatError);
  s.eos.reset();
  s.merges = {"ab"};
  CHECK_THROWS_AS(Tokenizer(s), FormatError);
}

TEST_CASE("tokenizer: the real SmolLM2 vocabulary", "[tokenizer][model-file]") {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const t = Tokenizer::from_gguf(GgufFile::open(path));
  CHECK(t.vocab_size() == 49152);
  CHECK(t.pre() == "smollm");
  CHECK(t.is_eog(2));
  auto const chat = t.encode("<|im_start|>user\nHi<|im_end|>\n", {.parse_special = true});
  REQUIRE(chat.size() >= 4);
  CHECK(chat.front() == 1);
  CHECK(t.decode(chat, {.special = true}) == "<|im_start|>user\nHi<|im_end|>\n");
  for (std::string const s : {"Hello, world!", "  leading spaces and trailing  ", "naïve café — 東京 🍕🍕",
                               "int main() { return 0; }\n\ttab", "3.14159 1,000,000", ""}) {
    auto const v = t.encode(s);
    CHECK(t.decode(v) == s);
    CHECK(stream_all(t, v) == s);
  }
  CHECK(t.encode("Hello world").size() == 2);
}
