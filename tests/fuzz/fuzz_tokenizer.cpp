// libFuzzer target for the tokenizer: encode (plain, with special tokens, as spans), decode and the streaming
// detokenizer. Any input must either succeed or throw a piecrust::Error, and the round trips must hold:
//  * plain text never yields a control token, and decode(encode(x)) is x with malformed UTF-8 (and, for
//    byte-level BPE, characters the vocabulary cannot spell) replaced by U+FFFD: well-formed UTF-8 that
//    encodes to the same ids again;
//  * with special tokens parsed, decoding with special tokens rendered gives the same text;
//  * spans: control tokens only from spans marked parse_special, as many as those spans alone give;
//  * the streaming detokenizer's chunks concatenate to decode() of the same ids, for any ids.
// The vocabulary is loaded once: the real model's when PIECRUST_MODEL names an existing file, otherwise a
// small byte-level one built here; small byte-level ones for every pre-tokenizer and a SentencePiece one too.
//
// Input: byte 0 selects the tokenizer and mode (see Mode), the rest is the text (at most 64 KiB of it).

#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/streaming_detokenizer.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace piecrust;

namespace {

[[noreturn]] void violated(char const* what) {
  std::fprintf(stderr, "fuzz_tokenizer: invariant violated: %s\n", what);
  std::abort();
}

void require(bool ok, char const* what) {
  if (!ok) violated(what);
}

Tokenizer tiny_gpt2(std::string pre) {
  TokenizerSpec s;
  s.model = TokenizerModel::gpt2;
  s.pre = std::move(pre);
  for (auto const* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    s.tokens.push_back(t);
    s.types.push_back(TokenType::control);
  }
  s.tokens.push_back("<tool>");
  s.types.push_back(TokenType::user_defined);
  auto const& bl = detail::ByteLevel::get();
  for (int b = 0; b < 256; ++b) {
    s.tokens.push_back(bl.byte_to_text[b]);
    s.types.push_back(TokenType::normal);
  }
  for (std::string m : {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġ Ġ", "ĠĠ ĠĠ", "e r", "Ġ t", "t h", "Ġt h",
                        "Ċ Ċ", "1 2", "Ã ©"}) {
    s.merges.push_back(m);
    auto const sp = m.find(' ');
    s.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
    s.types.push_back(TokenType::normal);
  }
  s.eos = 0;
  s.bos = 1;
  s.add_bos = true;
  return Tokenizer(std::move(s));
}

Tokenizer tiny_spm() {
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
      {"hello", -6},       {"\xe2\x96\x81hello", -7}, {"\xe2\x96\x81\xe2\x96\x81", -3}, {"\xc3\xa9", -4}, {"s", -2}, {">", -2}};
  for (auto const& [p, sc] : pieces) {
    s.tokens.push_back(p);
    s.types.push_back(TokenType::normal);
    s.scores.push_back(sc);
  }
  s.bos = 1;
  s.eos = 2;
  s.unk = 0;
  s.add_bos = true;
  return Tokenizer(std::move(s));
}

struct Vocabularies {
  std::vector<Tokenizer> all;  // [0]: the real model's or a byte-level smollm one; then one per kind
  bool real = false;
};

Vocabularies const& vocabularies() {
  static Vocabularies const v = [] {
    Vocabularies out;
    char const* env = std::getenv("PIECRUST_MODEL");
    if (env != nullptr && *env != '\0' && std::filesystem::exists(env)) {
      out.all.push_back(Tokenizer::from_gguf(GgufFile::open(env)));
      out.real = true;
    } else {
      out.all.push_back(tiny_gpt2("smollm"));
    }
    for (auto const* pre : {"gpt2", "llama3", "qwen2", "default", "smollm"}) out.all.push_back(tiny_gpt2(pre));
    out.all.push_back(tiny_spm());
    out.all.push_back(tiny_spm());
    return out;
  }();
  return v;
}

// Byte 0 of the input.
struct Mode {
  unsigned vocab;      // bits 0-2: which vocabulary
  bool parse_special;  // bit 3
  bool add_special;    // bit 4
  bool spans;          // bit 5: the text is spans separated by 0x1F, parse_special alternating
  bool first_parsed;   // bit 6: whether the first span is markup
  bool ids;            // bit 7: also decode the text's bytes read as token ids
};

std::vector<TokenId> controls(Tokenizer const& t, std::vector<TokenId> const& v) {
  std::vector<TokenId> out;
  for (auto id : v) {
    if (t.token_type(id) == TokenType::control) out.push_back(id);
  }
  return out;
}

// The streaming detokenizer's text for v. When the whole text is well-formed UTF-8, so is every chunk.
std::string stream(Tokenizer const& t, std::vector<TokenId> const& v, DecodeOptions opt) {
  StreamingDetokenizer d(t, opt);
  std::string out;
  std::vector<std::string> chunks;
  for (auto id : v) {
    chunks.push_back(d.push(id));
    out += chunks.back();
  }
  chunks.push_back(d.flush());
  out += chunks.back();
  if (detail::is_valid_utf8(out)) {
    for (auto const& c : chunks) require(detail::is_valid_utf8(c), "a streamed chunk splits a character");
  }
  return out;
}

// The replacement rule for a vocabulary that has every byte: each byte that does not start a well-formed
// sequence becomes U+FFFD (decoded by value here, independently of the tokenizer's table).
std::string replace_malformed(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    auto const c = static_cast<unsigned char>(s[i]);
    std::size_t const n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
    bool ok = n > 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; ++k) {
      auto const cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    std::uint32_t const min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= min_cp[n] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

void check_plain(Tokenizer const& t, std::string_view text, bool every_byte, bool add_special) {
  auto const v = t.encode(text, {.add_special = add_special});
  std::vector<TokenId> body = v;
  if (add_special && !body.empty() && t.bos() && body.front() == *t.bos()) body.erase(body.begin());
  require(controls(t, body).empty(), "plain text gave a control token");
  auto const back = t.decode(v);
  require(detail::is_valid_utf8(back), "decode of plain text is not UTF-8");
  if (every_byte) {
    std::string want = replace_malformed(text);
    if (t.model() == TokenizerModel::llama) {  // SentencePiece decodes its space marker U+2581 as a space
      for (std::size_t at; (at = want.find("\xe2\x96\x81")) != std::string::npos;) want.replace(at, 3, " ");
    }
    require(back == want, "decode(encode(x)) is not x with U+FFFD replacements");
  }
  require(t.encode(back, {.add_special = add_special}) == v, "the decoded text encodes to other ids");
  require(stream(t, v, {}) == back, "streamed text differs from decode");
  // With special tokens parsed and rendered, the same text comes back.
  auto const w = t.encode_with_special_tokens(text);
  require(t.decode(w, {.special = true}) == t.decode(t.encode(text), {.special = true}), "parsed specials change the text");
  require(stream(t, w, {.special = true}) == t.decode(w, {.special = true}), "streamed text differs from decode");
}

void check_spans(Tokenizer const& t, std::string_view text, bool first_parsed) {
  std::vector<TextSpan> spans;
  bool parse = first_parsed;
  for (std::size_t start = 0;;) {
    auto const end = text.find('\x1f', start);
    spans.push_back({text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start), parse});
    parse = !parse;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  auto const v = t.encode_spans(spans);
  std::vector<TokenId> want_controls;
  std::string want_text;
  for (auto const& s : spans) {
    auto const one = t.encode(s.text, {.parse_special = s.parse_special});
    auto const c = controls(t, one);
    want_controls.insert(want_controls.end(), c.begin(), c.end());
    want_text += t.decode(t.encode(s.text), {.special = true});
  }
  require(controls(t, v) == want_controls, "spans gave control tokens other than their markup's");
  if (t.model() == TokenizerModel::gpt2) {
    require(t.decode(v, {.special = true}) == want_text, "spans decode to other text");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  auto const& voc = vocabularies();
  if (size == 0) return 0;
  Mode const m{data[0] & 7u, (data[0] & 8) != 0, (data[0] & 16) != 0, (data[0] & 32) != 0, (data[0] & 64) != 0,
               (data[0] & 128) != 0};
  std::string_view text(reinterpret_cast<char const*>(data) + 1, std::min<std::size_t>(size - 1, 1u << 16));
  auto const& t = voc.all[m.vocab % voc.all.size()];
  bool const every_byte = !(m.vocab == 0 && voc.real);  // the built-in vocabularies spell every byte
  try {
    if (m.spans) {
      check_spans(t, text, m.first_parsed);
    } else {
      check_plain(t, text, every_byte, m.add_special);
      if (m.parse_special) (void)t.encode(text, {.add_special = m.add_special, .parse_special = true});
    }
    if (m.ids) {
      std::vector<TokenId> ids;
      for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
        auto const raw = static_cast<std::uint32_t>(static_cast<unsigned char>(text[i])) << 8 | static_cast<unsigned char>(text[i + 1]);
        ids.push_back(static_cast<TokenId>(raw % t.vocab_size()));
      }
      for (bool special : {false, true}) {
        require(stream(t, ids, {.special = special}) == t.decode(ids, {.special = special}), "streamed ids differ from decode");
      }
      // An id outside the vocabulary is an OutOfRange, never a crash.
      try {
        (void)t.token_to_bytes(static_cast<TokenId>(t.vocab_size()));
        violated("an id outside the vocabulary was accepted");
      } catch (OutOfRange const&) {
      }
    }
  } catch (Error const&) {
  }
  return 0;
}
