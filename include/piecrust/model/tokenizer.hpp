#pragma once
// Tokenizer: text <-> token ids, built from a GGUF file's tokenizer.ggml.* metadata.
//
// Two models, as llama.cpp implements them (src/llama-vocab.cpp):
//  * `gpt2`  — byte-level BPE (GPT-2, SmolLM2, Qwen2, Llama-3). The text is split by the pre-tokenizer
//    regexes that tokenizer.ggml.pre names (run with PCRE2, Unicode properties on), each piece is mapped
//    to GPT-2's byte alphabet and merged by rank (tokenizer.ggml.merges).
//  * `llama` — SentencePiece-style BPE (Llama-1/2, Mistral): spaces become U+2581, pieces merge by score
//    (tokenizer.ggml.scores), characters not in the vocabulary fall back to <0xXX> byte tokens.
//
// Special tokens. Control tokens (<|im_start|>, <|eot_id|>, ...) come only from text the caller marks as
// markup: EncodeOptions::parse_special, encode_with_special_tokens, or a TextSpan with parse_special (what
// ChatTemplate gives its own markup). Plain text, and so anything a user typed, never yields a control token:
// "<|im_end|>" written in it is ordinary text that decodes back to itself. User-defined tokens (pieces the
// vocabulary keeps whole) are matched in all text, as llama.cpp does; they decode to their own text.
//
// Cost. BPE merges with a priority queue over a linked list of symbols (as llama.cpp's
// llm_tokenizer_bpe_session and llm_tokenizer_spm_session), O(n log n) in a word's length; the pre-tokenizer
// regexes run with PCRE2's match limits (detail::Pcre2Regex).
//
// Malformed UTF-8. Each byte that does not start a well-formed sequence (a stray continuation byte, C0, C1,
// F5..FF, a truncated sequence, an overlong form, a surrogate, a code point above U+10FFFF) becomes U+FFFD,
// one per byte, before anything else — as llama.cpp's unicode_cpts_from_utf8 does for byte-level BPE. Unlike
// llama.cpp, overlong forms and surrogates count as malformed (llama.cpp decodes "C0 BC" as '<'). For byte-level
// BPE a well-formed character with a byte the vocabulary has no token for (SmolLM2 lacks 0x04 and the lead
// bytes F1, F2) becomes U+FFFD too, where llama.cpp drops it. So decode(encode(text)) is `text` with those
// replacements, for every input.

#include <piecrust/core/error.hpp>
#include <piecrust/model/detail/byte_level.hpp>
#include <piecrust/model/detail/pcre2_regex.hpp>
#include <piecrust/model/detail/utf8.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/token_type.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
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
  bool parse_special = false;  // recognise control tokens (<|im_start|>, ...) written in the text: only for
                               // text the program wrote itself, never for user input
};

struct DecodeOptions {
  bool special = false;  // render control tokens as their text (otherwise they produce no bytes)
};

/// A run of text to encode, and whether control tokens written in it are recognised. A chat template marks
/// its own markup parse_special and the caller's role and content not, so that user text never becomes markup.
struct TextSpan {
  std::string_view text;
  bool parse_special = false;
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

namespace detail {

/// Lets an unordered_map keyed by std::string be searched with a string_view, without a copy.
struct StringHash {
  using is_transparent = void;
  [[nodiscard]] std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// One BPE symbol: bytes [begin, begin + len) of the word, in a doubly linked list; len 0 once merged away.
struct BpeSymbol {
  std::uint32_t begin, len;
  std::int32_t prev, next;  // -1: none
};

/// A mergeable adjacent pair. Smaller key merges first, then the leftmost (smaller left).
struct BpeCandidate {
  double key;
  std::int32_t left, right;
  std::uint32_t len;  // left.len + right.len when queued: a pair whose symbols changed since is stale
};

}  // namespace detail

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

  /// Token texts that chat templates use as markup. A file that types one of them normal or user-defined gets
  /// it treated as control, so that plain text cannot produce it (llama.cpp's llama_vocab::load overrides
  /// such "control-looking" tokens the same way). "</s>" is on llama.cpp's end-of-generation list too, so
  /// Gemma's user-defined "</s>" is control and ends generation there; piecrust follows for token parity.
  static constexpr std::array<std::string_view, 13> chat_markup_tokens = {
      "<|im_start|>", "<|im_end|>",    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
      "<|eom_id|>",   "<|endoftext|>", "<|end|>",           "<start_of_turn>",     "<end_of_turn>",     "<EOT>",
      "</s>"};

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

  /// Validates the spec: FormatError for empty vocabularies, mismatched array lengths, special ids out of
  /// range, NaN scores, byte tokens not spelled <0xHH>, merges without a space.
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
      // A NaN would leave the merge order undefined.
      for (std::size_t i = 0; i < n; ++i) {
        if (std::isnan(s_.scores[i])) detail::fail<FormatError>("Tokenizer: scores[", i, "] of token '", s_.tokens[i], "' is NaN");
      }
    }
    for (auto const* opt : {&s_.bos, &s_.eos, &s_.unk, &s_.eot, &s_.pad}) {
      if (*opt && (**opt < 0 || static_cast<std::size_t>(**opt) >= n)) {
        detail::fail<FormatError>("Tokenizer: special token id ", **opt, " is outside the vocabulary of ", n);
      }
    }
    byte_value_.assign(n, 0);
    byte_tokens_.fill(-1);
    for (std::size_t i = 0; i < n; ++i) {
      auto& t = s_.types[i];
      auto const& text = s_.tokens[i];
      if (t == TokenType::byte) {
        auto const v = parse_byte_token(text);
        if (!v) detail::fail<FormatError>("Tokenizer: token ", i, " '", text, "' has type byte but is not spelled <0xHH>");
        byte_value_[i] = *v;
        if (s_.model == TokenizerModel::llama && byte_tokens_[*v] < 0) byte_tokens_[*v] = static_cast<TokenId>(i);
      }
      if ((t == TokenType::normal || t == TokenType::user_defined || t == TokenType::undefined) &&
          std::find(chat_markup_tokens.begin(), chat_markup_tokens.end(), text) != chat_markup_tokens.end()) {
        t = TokenType::control;
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
    representable_.fill(true);
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
      ignore_merges_ = s_.pre == "llama3" || s_.pre == "llama-bpe" || s_.pre == "llama-v3";
      auto const& bl = detail::ByteLevel::get();
      for (int b = 0; b < 256; ++b) {
        byte_tokens_[b] = text_token(bl.byte_to_text[b]).value_or(-1);
        representable_[b] = byte_tokens_[b] >= 0;
      }
    }
    bool const fffd = std::all_of(detail::utf8_replacement.begin(), detail::utf8_replacement.end(),
                                  [&](char c) { return representable_[static_cast<unsigned char>(c)]; });
    replacement_ = fffd ? detail::utf8_replacement : std::string_view();
  }

  [[nodiscard]] TokenizerModel model() const noexcept { return s_.model; }
  [[nodiscard]] std::string const& pre() const noexcept { return s_.pre; }
  /// Everything the tokenizer was built from (model_identity hashes it).
  [[nodiscard]] TokenizerSpec const& spec() const noexcept { return s_; }
  [[nodiscard]] std::size_t vocab_size() const noexcept { return s_.tokens.size(); }
  [[nodiscard]] std::optional<TokenId> bos() const noexcept { return s_.bos; }
  /// Whether the vocabulary starts every text with BOS (tokenizer.ggml.add_bos_token; EncodeOptions::add_special).
  [[nodiscard]] bool adds_bos() const noexcept { return s_.add_bos; }
  [[nodiscard]] std::optional<TokenId> eos() const noexcept { return s_.eos; }
  [[nodiscard]] std::optional<TokenId> eot() const noexcept { return s_.eot; }
  /// Token text as stored in the vocabulary (byte-level or U+2581-escaped).
  [[nodiscard]] std::string const& token_text(TokenId id) const { return s_.tokens[checked(id)]; }
  /// The token's type; chat markup a file typed normal or user-defined reads as control (chat_markup_tokens).
  [[nodiscard]] TokenType token_type(TokenId id) const { return s_.types[checked(id)]; }
  [[nodiscard]] std::optional<TokenId> find(std::string_view text) const {
    auto const it = index_.find(text);
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
           t == "<|eom_id|>" || t == "<EOT>" || t == "</s>";
  }

  /// Text to ids. Control tokens written in the text are recognised only with opt.parse_special; without
  /// it "<|im_end|>" is ordinary text. Malformed UTF-8 becomes U+FFFD (see the top of this header).
  [[nodiscard]] std::vector<TokenId> encode(std::string_view text, EncodeOptions opt = {}) const {
    TextSpan const part{text, opt.parse_special};
    return encode_spans(std::span<TextSpan const>(&part, 1), opt.add_special);
  }

  /// Text whose control-token markup is parsed ("<|im_start|>" becomes that token). Only for text the
  /// program wrote itself: never pass user input here.
  [[nodiscard]] std::vector<TokenId> encode_with_special_tokens(std::string_view text, bool add_special = false) const {
    return encode(text, {.add_special = add_special, .parse_special = true});
  }

  /// The spans, in order, as one text: control tokens are recognised only inside spans marked parse_special,
  /// so none can come from the others or straddle two spans. Otherwise the result is that of encoding the
  /// concatenated text with parse_special: adjacent plain text of several spans is one piece, tokenized as such.
  [[nodiscard]] std::vector<TokenId> encode_spans(std::span<TextSpan const> parts, bool add_special = false) const {
    struct Frag {
      std::size_t begin, end;
      TokenId special;  // -1: raw text
      bool parse;       // control tokens may be cut out of it
    };
    std::string text;  // the parts, malformed UTF-8 replaced
    std::vector<Frag> frags;
    bool any_parse = false;
    for (auto const& p : parts) {
      std::size_t const b = text.size();
      append_sanitized(p.text, text);
      if (text.size() > b) frags.push_back({b, text.size(), -1, p.parse_special});
      any_parse = any_parse || p.parse_special;
    }
    // Cut out special tokens, longest first (llama.cpp tokenizer_st_partition).
    for (TokenId const sp : specials_) {
      bool const control = s_.types[static_cast<std::size_t>(sp)] == TokenType::control;
      if (control && !any_parse) continue;
      auto const& st = s_.tokens[static_cast<std::size_t>(sp)];
      std::vector<Frag> next;
      next.reserve(frags.size());
      for (auto const& f : frags) {
        if (f.special >= 0 || (control && !f.parse)) {
          next.push_back(f);
          continue;
        }
        std::string_view const upto(text.data(), f.end);
        std::size_t pos = f.begin;
        while (pos < f.end) {
          auto const hit = upto.find(st, pos);
          if (hit == std::string_view::npos) break;
          if (hit > pos) next.push_back({pos, hit, -1, f.parse});
          next.push_back({hit, hit + st.size(), sp, f.parse});
          pos = hit + st.size();
        }
        if (pos < f.end) next.push_back({pos, f.end, -1, f.parse});
      }
      frags = std::move(next);
    }
    std::vector<TokenId> out;
    if (add_special && s_.add_bos && s_.bos) out.push_back(*s_.bos);
    Scratch scratch(*this);
    bool first_raw = true;
    for (std::size_t k = 0; k < frags.size();) {
      if (frags[k].special >= 0) {
        out.push_back(frags[k++].special);
        continue;
      }
      std::size_t const begin = frags[k].begin;
      std::size_t end = frags[k].end;
      while (++k < frags.size() && frags[k].special < 0) end = frags[k].end;  // contiguous plain text
      auto const piece = std::string_view(text).substr(begin, end - begin);
      if (s_.model == TokenizerModel::gpt2) {
        encode_gpt2(piece, out, scratch);
      } else {
        // llama.cpp adds the space prefix only to the very first raw fragment of the text.
        encode_spm(piece, first_raw && s_.add_space_prefix && begin == 0, out, scratch);
      }
      first_raw = false;
    }
    if (add_special && s_.add_eos && s_.eos) out.push_back(*s_.eos);
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
      case TokenType::byte: return std::string(1, static_cast<char>(byte_value_[i]));
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
      if (strips_prefix_space(out.empty(), ids[k], piece)) piece.erase(0, 1);
      out += piece;
    }
    return out;
  }

  /// Whether `piece`, the bytes of token `id`, loses its first byte in decoded text: for SPM with
  /// add_space_prefix, the space of the first normal token when nothing was decoded before it.
  [[nodiscard]] bool strips_prefix_space(bool nothing_before, TokenId id, std::string_view piece) const {
    return s_.model == TokenizerModel::llama && s_.add_space_prefix && nothing_before && !piece.empty() &&
           piece[0] == ' ' && s_.types[checked(id)] == TokenType::normal;
  }

 private:
  // Per-call working memory: the regexes' match data and the BPE buffers, reused across a text's words.
  struct Scratch {
    explicit Scratch(Tokenizer const& t) {
      if (t.regexes_) {
        regex.reserve(t.regexes_->size());
        for (auto const& re : *t.regexes_) regex.emplace_back(re);
      }
    }
    std::vector<detail::Pcre2Regex::Scratch> regex;  // [pre-tokenizer regexes]
    std::vector<detail::BpeSymbol> symbols;          // [characters of the word]
    std::vector<detail::BpeCandidate> heap;          // [queued pairs], a binary heap
    std::string word;                                // the word in GPT-2's byte alphabet (SPM: ▁-escaped)
    std::string key;                                 // "left right", a merge's spelling
  };

  [[nodiscard]] std::size_t checked(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= s_.tokens.size()) {
      detail::fail<OutOfRange>("Tokenizer: token id ", id, " is outside the vocabulary of ", s_.tokens.size());
    }
    return static_cast<std::size_t>(id);
  }

  [[nodiscard]] static std::optional<std::uint8_t> parse_byte_token(std::string_view t) noexcept {
    if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int const hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<std::uint8_t>(hi * 16 + lo);
  }

  // A token that plain text may become: not control, unknown, byte or unused. SentencePiece never merges into
  // those either (sentencepiece's model_interface keeps them out of its pieces).
  [[nodiscard]] std::optional<TokenId> text_token(std::string_view text) const {
    auto const it = index_.find(text);
    if (it == index_.end()) return std::nullopt;
    auto const t = s_.types[static_cast<std::size_t>(it->second)];
    if (t != TokenType::normal && t != TokenType::user_defined && t != TokenType::undefined) return std::nullopt;
    return it->second;
  }

  // Appends `in` to `out` with each byte that does not start a well-formed sequence replaced by U+FFFD, and
  // (byte-level BPE) each character with a byte that has no token too; replacement_ is empty when the
  // vocabulary cannot spell U+FFFD either, and then such bytes are dropped.
  void append_sanitized(std::string_view in, std::string& out) const {
    out.reserve(out.size() + in.size());
    for (std::size_t i = 0; i < in.size();) {
      std::size_t const n = detail::utf8_sequence_length(in, i);
      if (n == 0) {
        out.append(replacement_);
        ++i;
        continue;
      }
      bool ok = true;
      for (std::size_t k = 0; k < n; ++k) ok = ok && representable_[static_cast<unsigned char>(in[i + k])];
      if (ok) {
        out.append(in.substr(i, n));
      } else {
        out.append(replacement_);
      }
      i += n;
    }
  }

  void encode_gpt2(std::string_view text, std::vector<TokenId>& out, Scratch& scratch) const {
    // Pre-tokenize: each regex refines the pieces of the previous one (llama.cpp unicode_regex_split).
    std::vector<std::size_t> bounds{text.size()};
    for (std::size_t r = 0; r < regexes_->size(); ++r) {
      std::vector<std::size_t> next;
      std::size_t start = 0;
      for (std::size_t const end : bounds) {
        if (end > start) (*regexes_)[r].split(text, start, end, next, scratch.regex[r]);
        start = end;
      }
      bounds = std::move(next);
    }
    auto const& bl = detail::ByteLevel::get();
    std::size_t start = 0;
    for (std::size_t const end : bounds) {
      scratch.word.clear();
      for (char c : text.substr(start, end - start)) scratch.word += bl.byte_to_text[static_cast<unsigned char>(c)];
      bpe_word(out, scratch);
      start = end;
    }
  }

  // Splits `word` into one symbol per UTF-8 character, linked in order.
  static void initial_symbols(std::string_view word, std::vector<detail::BpeSymbol>& sym) {
    sym.clear();
    for (std::size_t i = 0; i < word.size();) {
      std::size_t const n = std::min(detail::utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
      auto const k = static_cast<std::int32_t>(sym.size());
      sym.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(n), k - 1, k + 1});
      i += n;
    }
    if (!sym.empty()) sym.back().next = -1;
  }

  // Merges adjacent symbols while some pair has a key: smallest key first, leftmost on ties. The result is
  // that of rescanning the whole word for the best pair after every merge, in O(n log n): a merge only
  // creates the two pairs around the merged symbol, and queued pairs whose symbols changed are skipped.
  template <class KeyOf>
  static void bpe_merge(std::string_view word, std::vector<detail::BpeSymbol>& sym,
                        std::vector<detail::BpeCandidate>& heap, KeyOf const& key_of) {
    auto const later = [](detail::BpeCandidate const& a, detail::BpeCandidate const& b) {
      return a.key > b.key || (a.key == b.key && a.left > b.left);
    };
    heap.clear();
    auto const queue = [&](std::int32_t left, std::int32_t right, bool push) {
      if (left < 0 || right < 0) return;
      auto const& l = sym[static_cast<std::size_t>(left)];
      auto const& r = sym[static_cast<std::size_t>(right)];
      std::optional<double> const key = key_of(word.substr(l.begin, l.len), word.substr(r.begin, r.len));
      if (!key) return;
      heap.push_back({*key, left, right, l.len + r.len});
      if (push) std::push_heap(heap.begin(), heap.end(), later);
    };
    for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
      queue(static_cast<std::int32_t>(k), static_cast<std::int32_t>(k + 1), false);
    }
    std::make_heap(heap.begin(), heap.end(), later);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      auto const c = heap.back();
      heap.pop_back();
      auto& l = sym[static_cast<std::size_t>(c.left)];
      auto& r = sym[static_cast<std::size_t>(c.right)];
      if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<std::size_t>(r.next)].prev = c.left;
      std::int32_t const prev = l.prev, next = l.next;
      queue(prev, c.left, true);
      queue(c.left, next, true);
    }
  }

  // Byte-level BPE over one pre-tokenized word (scratch.word): repeatedly merge the adjacent pair of lowest
  // rank, leftmost first (llama.cpp llm_tokenizer_bpe_session::tokenize).
  void bpe_word(std::vector<TokenId>& out, Scratch& scratch) const {
    std::string_view const word = scratch.word;
    if (word.empty()) return;
    if (ignore_merges_) {
      if (auto id = text_token(word)) {
        out.push_back(*id);
        return;
      }
    }
    initial_symbols(word, scratch.symbols);
    bpe_merge(word, scratch.symbols, scratch.heap, [&](std::string_view l, std::string_view r) -> std::optional<double> {
      scratch.key.assign(l).append(1, ' ').append(r);
      auto const it = ranks_.find(std::string_view(scratch.key));
      if (it == ranks_.end()) return std::nullopt;
      return it->second;
    });
    auto const& bl = detail::ByteLevel::get();
    for (std::int32_t k = 0; k >= 0; k = scratch.symbols[static_cast<std::size_t>(k)].next) {
      auto const& s = scratch.symbols[static_cast<std::size_t>(k)];
      auto const text = word.substr(s.begin, s.len);
      if (auto id = text_token(text)) {
        out.push_back(*id);
      } else {  // not in the vocabulary: one token per byte (every byte has one: append_sanitized saw to it)
        for (char c : bl.decode(text)) {
          auto const b = byte_tokens_[static_cast<unsigned char>(c)];
          if (b >= 0) out.push_back(b);
        }
      }
    }
  }

  // SentencePiece BPE: merge the adjacent pair whose concatenation is the highest-scoring token, leftmost
  // first; characters outside the vocabulary become <0xXX> byte tokens, else unk (llama.cpp llm_tokenizer_spm).
  void encode_spm(std::string_view text, bool space_prefix, std::vector<TokenId>& out, Scratch& scratch) const {
    std::string& norm = scratch.word;
    norm.clear();
    if (space_prefix) norm += "\xe2\x96\x81";
    for (char c : text) {
      if (c == ' ') {
        norm += "\xe2\x96\x81";
      } else {
        norm += c;
      }
    }
    std::string_view const word = norm;
    initial_symbols(word, scratch.symbols);
    bpe_merge(word, scratch.symbols, scratch.heap, [&](std::string_view l, std::string_view r) -> std::optional<double> {
      auto const id = text_token(std::string_view(l.data(), l.size() + r.size()));  // r follows l in word
      if (!id) return std::nullopt;
      return -static_cast<double>(s_.scores[static_cast<std::size_t>(*id)]);  // highest score first
    });
    for (std::int32_t k = 0; k >= 0; k = scratch.symbols[static_cast<std::size_t>(k)].next) {
      auto const& s = scratch.symbols[static_cast<std::size_t>(k)];
      auto const piece = word.substr(s.begin, s.len);
      if (auto id = text_token(piece)) {
        out.push_back(*id);
        continue;
      }
      for (char c : piece) {
        auto const b = byte_tokens_[static_cast<unsigned char>(c)];
        if (b >= 0) {
          out.push_back(b);
        } else if (s_.unk) {
          out.push_back(*s_.unk);
        }
      }
    }
  }

  using TokenIndex = std::unordered_map<std::string, TokenId, detail::StringHash, std::equal_to<>>;
  using MergeRanks = std::unordered_map<std::string, int, detail::StringHash, std::equal_to<>>;

  TokenizerSpec s_;
  TokenIndex index_;                         // token text -> id (the first of equal texts)
  MergeRanks ranks_;                         // "left right" -> rank (gpt2)
  std::vector<TokenId> specials_;            // [control and user-defined tokens], longest first
  std::shared_ptr<std::vector<detail::Pcre2Regex> const> regexes_;
  std::array<TokenId, 256> byte_tokens_{};   // [byte] -> its fallback token, -1: none
  std::array<bool, 256> representable_{};    // [byte] -> whether plain text may contain it (byte-level BPE)
  std::vector<std::uint8_t> byte_value_;     // [vocab] -> the byte a byte-typed token stands for
  std::string_view replacement_;             // what a malformed byte becomes: U+FFFD, or nothing
  bool ignore_merges_ = false;               // llama3: a word that is a token is not merged
};

}  // namespace piecrust
