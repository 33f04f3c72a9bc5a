#pragma once
// Shared by the seed tests (tests/seeds): the tiny random Llama of the runtime tests, plus a byte-level
// tokenizer with ChatML's markup as control tokens, so that the seeds' chat fills (fill_system, fill_user)
// run as written on the tiny model's vocabulary of 512 ids.
#include "tiny_runtime.hpp"

#include <piecrust/model/detail/byte_level.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust::testing {

/// Ids 0..255: the bytes; 256 = <|im_start|>, 257 = <|im_end|> (control tokens).
inline Tokenizer const& chat_tokenizer() {
  static Tokenizer const tokenizer = [] {
    TokenizerSpec s;
    s.model = TokenizerModel::gpt2;
    s.pre = "gpt2";
    for (int b = 0; b < 256; ++b) s.tokens.push_back(detail::ByteLevel::get().byte_to_text[b]);
    s.types.assign(256, TokenType::normal);
    for (char const* t : {"<|im_start|>", "<|im_end|>"}) {
      s.tokens.push_back(t);
      s.types.push_back(TokenType::control);
    }
    s.eos = 257;
    return Tokenizer(std::move(s));
  }();
  return tokenizer;
}
inline constexpr std::uint32_t im_end = 257;

/// An engine over the tiny model that has the chat tokenizer and ChatML.
inline std::unique_ptr<Engine<Tiny>> chat_engine(EngineOptions options = engine_options()) {
  return std::make_unique<Engine<Tiny>>(tiny_model(), std::move(options), &chat_tokenizer(), ChatTemplate(ChatFamily::chatml));
}

inline std::uint32_t argmax(std::span<float const> row) {
  return static_cast<std::uint32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

/// softmax(row / temperature), in double.
inline std::vector<double> softmax(std::span<float const> row, double temperature = 1.0) {
  double const top = *std::max_element(row.begin(), row.end());
  std::vector<double> p(row.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < row.size(); ++i) sum += p[i] = std::exp((row[i] - top) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

/// The positions of a context's KV slots, in slot order.
template <class M>
std::vector<std::uint32_t> positions_of(Context<M> const& ctx) {
  std::vector<std::uint32_t> out;
  for (TokenMeta const& t : ctx.page_table().tokens()) out.push_back(t.position);
  return out;
}

/// The raw logits after `tokens` fed to `ctx` in one pass (the last input's row).
template <class M>
Task<std::vector<float>> logits_after(Context<M>& ctx, std::vector<std::uint32_t> tokens) {
  auto fwd = ctx.forward();
  fwd.input(tokens);
  auto const h = fwd.probe(tokens.size() - 1, Logits{});
  ForwardOutput const out = co_await fwd.execute();
  co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
}

}  // namespace piecrust::testing
