#pragma once
// StreamingDetokenizer: turns tokens into text as they are generated, never emitting half of a UTF-8
// character. A byte-level token can end in the middle of a multi-byte character; those bytes are held
// until the next token completes them (or flush() releases them at the end). Bytes that can never become
// a well-formed character (a model may emit them) are passed on as they are, so the chunks of push() and
// flush() always concatenate to decode() of the same tokens.

#include <piecrust/model/detail/utf8.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <string>

namespace piecrust {

class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(Tokenizer const& tok, DecodeOptions opt = {}) : tok_(&tok), opt_(opt) {}

  /// Appends one token; returns the text that is now complete (possibly empty). Throws OutOfRange (nothing
  /// changed) for an id outside the vocabulary.
  [[nodiscard]] std::string push(TokenId id) {
    auto piece = tok_->token_to_bytes(id, opt_);
    // The space that SentencePiece's add_space_prefix inserted, removed where decode() removes it.
    if (tok_->strips_prefix_space(!started_, id, piece)) piece.erase(0, 1);
    started_ = started_ || !piece.empty();
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
  bool started_ = false;  // some token produced bytes
};

}  // namespace piecrust
