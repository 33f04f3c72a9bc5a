#pragma once
// StreamingDetokenizer: turns tokens into text as they are generated, never emitting half of a UTF-8
// character. A byte-level token can end in the middle of a multi-byte character; those bytes are held
// until the next token completes them (or flush() releases them at the end).

#include <piecrust/model/detail/utf8.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <string>

namespace piecrust {

class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(Tokenizer const& tok, DecodeOptions opt = {}) : tok_(&tok), opt_(opt) {}

  /// Appends one token; returns the text that is now complete (possibly empty).
  [[nodiscard]] std::string push(TokenId id) {
    auto piece = tok_->token_to_bytes(id, opt_);
    if (first_ && tok_->model() == TokenizerModel::llama && !piece.empty() && piece[0] == ' ' &&
        tok_->token_type(id) == TokenType::normal) {
      piece.erase(0, 1);  // the space that SentencePiece's add_space_prefix inserted
    }
    first_ = false;
    pending_ += piece;
    std::size_t const hold = detail::utf8_incomplete_tail(pending_);
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }

  /// Releases any held bytes (an incomplete character at the end of generation).
  [[nodiscard]] std::string flush() {
    std::string out;
    out.swap(pending_);
    return out;
  }

 private:
  Tokenizer const* tok_;
  DecodeOptions opt_;
  std::string pending_;
  bool first_ = true;
};

}  // namespace piecrust
