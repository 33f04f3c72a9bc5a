#pragma once
// Tokenizer: text <-> token ids, built from a GGUF file's tokenizer.ggml.* metadata.
//
// Two models, as llama.cpp implements them (src/llama-vocab.cpp):
//  * `gpt2`  — byte-level BPE (GPT-2, SmolLM2, Qwen2, Llama-3). The text is split by the pre-tokenizer
//    regexes that tokenizer.ggml.pre names (run with PCRE2, Unicode properties on), each piece is mapped
//    to GPT-2's byte alphabet and merged by rank (tokenizer.ggml.merges).
//  * `llama` — SentencePiece-style BPE (Llama-1/2, Mistral): spaces become U+2581, pieces merge by score
//    (tokenizer.ggml.scores), characters not in the vocabulary fall back to <0xXX> byte tokens.
// Special tokens (control and user-defined) are matched in the raw text first, longest first, and never
// go through BPE; control tokens are matched only when parse_special is set, user-defined ones always.

#include <piecrust/core/error.hpp>
#include <piecrust/model/detail/byte_level.hpp>
#include <piecrust/model/detail/pcre2_regex.hpp>
#include <piecrust/model/detail/utf8.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/token_type.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace piecrust {

enum class TokenizerModel { gpt2, llama };

struct EncodeOptions {
  bool add_special = false;    // prepend BOS / append EOS when the vocabulary asks for them
  bool parse_special = false;  // recognise control tokens (<|im_start|>, ...) written in the text
};

struct DecodeOptions {
  bool special = false;  // render control tokens as their text (otherwise they produce no bytes)
};

/// Everything a tokenizer needs; from_gguf fills it from metadata, tests can fill it by hand.
struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::gpt2;
  std::string pre = "default";  // tokenizer.ggml.pre (gpt2 only)
  std::vector<std::string> tokens;
  std::vector<TokenType> types;   // empty: all normal
  std::vector<float> scores;      // llama only
  std::vector<std::string> merges;  // gpt2 only, "left right", rank = index
  std::optional<TokenId> bos, eos, unk, eot, pad;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;  // llama only
};

class Tokenizer {
 public:
  /// Pre-tokenizer regexes per tokenizer.ggml.pre, copied from llama.cpp src/llama-vocab.cpp
  /// (llm_tokenizer_bpe). Unknown names throw Unsupported.
  [[nodiscard]] static std::vector<std::string> pre_tokenizer_regexes(std::string_view pre) {
    std::string const gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
    if (pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo" || pre == "jais") return {gpt2};
    if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "codeshell" ||
        pre == "exaone" || pre == "minerva-7b") {
      return {"\\p{N}", gpt2};
    }
    if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "dbrx" ||
        pre == "smaug-bpe") {
      return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    }
    if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "megrez") {
      return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    }
    if (pre == "default") {
      return {"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
    }
    detail::fail<Unsupported>("Tokenizer: pre-tokenizer tokenizer.ggml.pre = '", pre, "' is not supported");
  }

  /// Reads tokenizer.ggml.{model,pre,tokens,token_type,scores,merges,*_token_id,add_*} from a GGUF file.
  [[nodiscard]] static Tokenizer from_gguf(GgufFile const& f) {
    TokenizerSpec s;
    auto const model = f.get<std::string>("tokenizer.ggml.model");
    if (model == "gpt2") {
      s.model = TokenizerModel::gpt2;
    } else if (model == "llama") {
      s.model = TokenizerModel::llama;
    } else {
      detail::fail<Unsupported>(f.source(), ": tokenizer.ggml.model = '", model, "' is not supported (gpt2, llama)");
    }
    s.pre = f.get_or<std::string>("tokenizer.ggml.pre", "default");
    auto const& toks = f.array("tokenizer.ggml.tokens");
    s.tokens.reserve(toks.values.size());
    for (auto const& v : toks.values) s.tokens.push_back(v.as<std::string>("tokenizer.ggml.tokens"));
    if (f.contains("tokenizer.ggml.token_type")) {
      for (auto const& v : f.array("tokenizer.ggml.token_type").values) {
        s.types.push_back(static_cast<TokenType>(v.as<std::int32_t>("tokenizer.ggml.token_type")));
      }
    }
    if (f.contains("tokenizer.ggml.scores")) {
      for (auto const& v : f.array("tokenizer.ggml.scores").values) s.scores.push_back(v.as<float>("tokenizer.ggml.scores"));
    }
    if (f.contains("tokenizer.ggml.merges")) {
      for (auto const& v : f.array("tokenizer.ggml.merges").values) s.merges.push_back(v.as<std::string>("tokenizer.ggml.merges"));
    }
    auto id = [&](char const* key) -> std::optional<TokenId> {
      if (!f.contains(key)) return std::nullopt;
      return f.get<TokenId>(key);
    };
    s.bos = id("tokenizer.ggml.bos_token_id");
    s.eos = id("tokenizer.ggml.eos_token_id");
    s.unk = id("tokenizer.ggml.unknown_token_id");
    s.eot = id("tokenizer.ggml.eot_token_id");
    s.pad = id("tokenizer.ggml.padding_token_id");
    // Defaults as llama.cpp's llama_vocab::load: SPM adds BOS, BPE does not unless told.
    s.add_bos = f.get_or<bool>("tokenizer.ggml.add_bos_token", s.model == TokenizerModel::llama);
    s.add_eos = f.get_or<bool>("tokenizer.ggml.add_eos_token", false);
    s.add_space_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", s.model == TokenizerModel::llama);
    return Tokenizer(std::move(s));
  }

  /// Validates the spec: FormatError for empty vocabularies, mismatched array lengths, special ids out of range.
  explicit Tokenizer(TokenizerSpec spec) : s_(std::move(spec)) {
    std::size_t const n = s_.tokens.size();
    if (n == 0) detail::fail<FormatError>("Tokenizer: the vocabulary is empty");
    if (n > static_cast<std::size_t>(std::numeric_limits<TokenId>::max())) {
      detail::fail<FormatError>("Tokenizer: vocabulary size ", n, " exceeds the token id range");
    }
    if (s_.types.empty()) s_.types.assign(n, TokenType::normal);
    if (s_.types.size() != n) {
      detail::fail<FormatError>("Tokenizer: token_type has ", s_.types.size(), " entries, tokens has ", n);
    }
    if (s_.model == TokenizerModel::llama) {
      if (s_.scores.empty()) s_.scores.assign(n, 0.0f);
      if (s_.scores.size() != n) detail::fail<FormatError>("Tokenizer: scores has ", s_.scores.size(), " entries, tokens has ", n);
    }
    for (auto const* opt : {&s_.bos, &s_.eos, &s_.unk, &s_.eot, &s_.pad}) {
      if (*opt && (**opt < 0 || static_cast<std::size_t>(**opt) >= n)) {
        detail::fail<FormatError>("Tokenizer: special token id ", **opt, " is outside the vocabulary of ", n);
      }
    }
    index_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) index_.emplace(s_.tokens[i], static_cast<TokenId>(i));
    for (std::size_t i = 0; i < n; ++i) {
      auto const t = s_.types[i];
      if ((t == TokenType::control || t == TokenType::user_defined) && !s_.tokens[i].empty()) {
        specials_.push_back(static_cast<TokenId>(i));
      }
    }
    // Longest first, as llama.cpp's cache_special_tokens.
    std::stable_sort(specials_.begin(), specials_.end(), [&](TokenId a, TokenId b) {
      return s_.tokens[static_cast<std::size_t>(a)].size() > s_.tokens[static_cast<std::size_t>(b)].size();
    });
    if (s_.model == TokenizerModel::gpt2) {
      ranks_.reserve(s_.merges.size());
      for (std::size_t i = 0; i < s_.merges.size(); ++i) {
        auto const& m = s_.merges[i];
        if (m.find(' ', 1) == std::string::npos) detail::fail<FormatError>("Tokenizer: merge ", i, " '", m, "' has no space");
        ranks_.emplace(m, static_cast<int>(i));
      }
      auto res = pre_tokenizer_regexes(s_.pre);
      auto regs = std::make_shared<std::vector<detail::Pcre2Regex>>();
      for (auto& r : res) regs->emplace_back(std::move(r));
      regexes_ = std::move(regs);
      auto const& bl = detail::ByteLevel::get();
      for (int b = 0; b < 256; ++b) byte_tokens_[b] = find(bl.byte_to_text[b]).value_or(-1);
    } else {
      for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        byte_tokens_[b] = find(buf).value_or(-1);
      }
    }
  }

  [[nodiscard]] TokenizerModel model() const noexcept { return s_.model; }
  [[nodiscard]] std::string const& pre() const noexcept { return s_.pre; }
  [[nodiscard]] std::size_t vocab_size() const noexcept { return s_.tokens.size(); }
  [[nodiscard]] std::optional<TokenId> bos() const noexcept { return s_.bos; }
  [[nodiscard]] std::optional<TokenId> eos() const noexcept { return s_.eos; }
  [[nodiscard]] std::optional<TokenId> eot() const noexcept { return s_.eot; }
  /// Token text as stored in the vocabulary (byte-level or U+2581-escaped).
  [[nodiscard]] std::string const& token_text(TokenId id) const { return s_.tokens[checked(id)]; }
  [[nodiscard]] TokenType token_type(TokenId id) const { return s_.types[checked(id)]; }
  [[nodiscard]] std::optional<TokenId> find(std::string_view text) const {
    auto const it = index_.find(std::string(text));
    return it == index_.end() ? std::nullopt : std::optional<TokenId>(it->second);
  }
  /// End-of-generation: EOS, EOT, or a control token named like one (<|im_end|>, <|eot_id|>, <|end|>, ...).
  [[nodiscard]] bool is_eog(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= vocab_size()) return false;
    if ((s_.eos && id == *s_.eos) || (s_.eot && id == *s_.eot)) return true;
    if (s_.types[static_cast<std::size_t>(id)] != TokenType::control) return false;
    // As llama.cpp's llama_vocab::load collects special_eog_ids from these names.
    auto const& t = s_.tokens[static_cast<std::size_t>(id)];
    return t == "<|eot_id|>" || t == "<|im_end|>" || t == "<|end|>" || t == "<end_of_turn>" || t == "<|endoftext|>" ||
           t == "<|eom_id|>" || t == "<EOT>";
  }

  [[nodiscard]] std::vector<TokenId> encode(std::string_view text, EncodeOptions opt = {}) const {
    std::vector<TokenId> out;
    if (opt.add_special && s_.add_bos && s_.bos) out.push_back(*s_.bos);
    // Partition into raw fragments and special tokens (llama.cpp tokenizer_st_partition).
    struct Frag {
      std::size_t begin, end;
      TokenId special;  // -1: raw text
    };
    std::vector<Frag> frags{{0, text.size(), -1}};
    for (TokenId const sp : specials_) {
      if (!opt.parse_special && s_.types[static_cast<std::size_t>(sp)] == TokenType::control) continue;
      auto const& st = s_.tokens[static_cast<std::size_t>(sp)];
      std::vector<Frag> next;
      next.reserve(frags.size());
      for (auto const& f : frags) {
        if (f.special >= 0) {
          next.push_back(f);
          continue;
        }
        std::size_t pos = f.begin;
        while (pos < f.end) {
          auto const hit = text.substr(0, f.end).find(st, pos);
          if (hit == std::string_view::npos) break;
          if (hit > pos) next.push_back({pos, hit, -1});
          next.push_back({hit, hit + st.size(), sp});
          pos = hit + st.size();
        }
        if (pos < f.end) next.push_back({pos, f.end, -1});
      }
      frags = std::move(next);
    }
    bool first_raw = true;
    for (auto const& f : frags) {
      if (f.special >= 0) {
        out.push_back(f.special);
        continue;
      }
      auto const piece = text.substr(f.begin, f.end - f.begin);
      if (s_.model == TokenizerModel::gpt2) {
        encode_gpt2(piece, out);
      } else {
        // llama.cpp adds the space prefix only to the very first raw fragment of the text.
        encode_spm(piece, first_raw && s_.add_space_prefix && f.begin == 0, out);
      }
      first_raw = false;
    }
    if (opt.add_special && s_.add_eos && s_.eos) out.push_back(*s_.eos);
    return out;
  }

  /// The bytes of one token (may be part of a UTF-8 character). Throws OutOfRange for an id outside the vocabulary.
  [[nodiscard]] std::string token_to_bytes(TokenId id, DecodeOptions opt = {}) const {
    auto const i = checked(id);
    auto const& t = s_.tokens[i];
    switch (s_.types[i]) {
      case TokenType::control: return opt.special ? t : std::string();
      case TokenType::user_defined: return t;
      case TokenType::unused: return std::string();
      case TokenType::byte:
        if (t.size() == 6 && t.starts_with("<0x")) return std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
        return t;
      default: break;
    }
    if (s_.model == TokenizerModel::gpt2) return detail::ByteLevel::get().decode(t);
    std::string out;  // SPM: U+2581 -> space
    for (std::size_t k = 0; k < t.size();) {
      if (t.compare(k, 3, "\xe2\x96\x81") == 0) {
        out += ' ';
        k += 3;
      } else {
        out += t[k++];
      }
    }
    return out;
  }

  /// Concatenated bytes of the tokens. For SPM the space that add_space_prefix inserted is removed.
  [[nodiscard]] std::string decode(std::span<TokenId const> ids, DecodeOptions opt = {}) const {
    std::string out;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      auto piece = token_to_bytes(ids[k], opt);
      if (s_.model == TokenizerModel::llama && s_.add_space_prefix && out.empty() && !piece.empty() && piece[0] == ' ' &&
          s_.types[static_cast<std::size_t>(ids[k])] == TokenType::normal) {
        piece.erase(0, 1);
      }
      out += piece;
    }
    return out;
  }

 private:
  [[nodiscard]] std::size_t checked(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= s_.tokens.size()) {
      detail::fail<OutOfRange>("Tokenizer: token id ", id, " is outside the vocabulary of ", s_.tokens.size());
    }
    return static_cast<std::size_t>(id);
  }

  void encode_gpt2(std::string_view text, std::vector<TokenId>& out) const {
    // Pre-tokenize: each regex refines the pieces of the previous one (llama.cpp unicode_regex_split).
    std::vector<std::size_t> bounds{text.size()};
    for (auto const& re : *regexes_) {
      std::vector<std::size_t> next;
      std::size_t start = 0;
      for (std::size_t const end : bounds) {
        if (end > start) re.split(text, start, end, next);
        start = end;
      }
      bounds = std::move(next);
    }
    auto const& bl = detail::ByteLevel::get();
    std::size_t start = 0;
    for (std::size_t const end : bounds) {
      bpe_word(bl.encode(text.substr(start, end - start)), out);
      start = end;
    }
  }

  // Byte-level BPE over one pre-tokenized word: repeatedly merge the adjacent pair of lowest rank,
  // leftmost first (llama.cpp llm_tokenizer_bpe_session::tokenize).
  void bpe_word(std::string const& word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    if (s_.pre == "llama3" || s_.pre == "llama-bpe" || s_.pre == "llama-v3") {  // ignore_merges
      if (auto id = find(word)) {
        out.push_back(*id);
        return;
      }
    }
    std::vector<std::string> sym;
    for (std::size_t i = 0; i < word.size();) {
      std::size_t const n = std::min(detail::utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
      sym.emplace_back(word.substr(i, n));
      i += n;
    }
    std::string key;
    while (sym.size() > 1) {
      int best = std::numeric_limits<int>::max();
      std::size_t at = 0;
      for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
        key.assign(sym[k]).append(1, ' ').append(sym[k + 1]);
        auto const it = ranks_.find(key);
        if (it != ranks_.end() && it->second < best) {
          best = it->second;
          at = k;
        }
      }
      if (best == std::numeric_limits<int>::max()) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (auto const& s : sym) {
      if (auto id = find(s)) {
        out.push_back(*id);
      } else {  // not in the vocabulary: one token per byte-level character
        auto const raw = detail::ByteLevel::get().decode(s);
        for (char c : raw) {
          auto const b = byte_tokens_[static_cast<unsigned char>(c)];
          if (b >= 0) out.push_back(b);
        }
      }
    }
  }

  // SentencePiece BPE: merge the adjacent pair whose concatenation is the highest-scoring token, leftmost
  // first; characters outside the vocabulary become <0xXX> byte tokens (llama.cpp llm_tokenizer_spm).
  void encode_spm(std::string_view text, bool space_prefix, std::vector<TokenId>& out) const {
    std::string norm;
    if (space_prefix) norm += "\xe2\x96\x81";
    for (char c : text) {
      if (c == ' ') {
        norm += "\xe2\x96\x81";
      } else {
        norm += c;
      }
    }
    std::vector<std::string> sym;
    for (std::size_t i = 0; i < norm.size();) {
      std::size_t const n = std::min(detail::utf8_len(static_cast<unsigned char>(norm[i])), norm.size() - i);
      sym.emplace_back(norm.substr(i, n));
      i += n;
    }
    std::string key;
    while (sym.size() > 1) {
      float best = -std::numeric_limits<float>::infinity();
      std::size_t at = sym.size();
      for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
        key.assign(sym[k]).append(sym[k + 1]);
        auto const it = index_.find(key);
        if (it != index_.end() && (at == sym.size() || s_.scores[static_cast<std::size_t>(it->second)] > best)) {
          best = s_.scores[static_cast<std::size_t>(it->second)];
          at = k;
        }
      }
      if (at == sym.size()) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (auto const& s : sym) {
      if (auto id = find(s)) {
        out.push_back(*id);
        continue;
      }
      for (char c : s) {
        auto const b = byte_tokens_[static_cast<unsigned char>(c)];
        if (b >= 0) {
          out.push_back(b);
        } else if (s_.unk) {
          out.push_back(*s_.unk);
        }
      }
    }
  }

  TokenizerSpec s_;
  std::unordered_map<std::string, TokenId> index_;
  std::unordered_map<std::string, int> ranks_;
  std::vector<TokenId> specials_;
  std::shared_ptr<std::vector<detail::Pcre2Regex> const> regexes_;
  std::array<TokenId, 256> byte_tokens_{};
};

}  // namespace piecrust
