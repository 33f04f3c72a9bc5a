#pragma once
// ModelIdentity: which model computed a KV page, as SHA-256 digests of everything the K/V and the meaning of
// its token ids depend on. Exports record it and imports into an engine with another identity are refused,
// so two models of the same shape (a fine-tune and its base, two quantizations) never exchange K/V.
//
//   weights    the configuration (every LlamaConfig field) and every tensor the forward reads, in a fixed
//              order, each as (GGUF name, type, rows, cols, bytes as the kernels read them)
//   tokenizer  the tokenizer's whole spec (model, pre-tokenizer, tokens, types, scores, merges, special ids,
//              flags), or none for an engine without a tokenizer
//
// The whole of every tensor is hashed, not a sample: a sample lets a second file that differs only outside
// it (a fine-tune touching a few rows) pass as the first. Hashing runs once per engine, at its first export
// or import, never at load; EngineOptions::identity takes a precomputed one for engines sharing a model.

#include <piecrust/kernels/weight_matrix.hpp>
#include <piecrust/model/detail/sha256.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace piecrust {

struct ModelIdentity {
  using Digest = std::array<std::uint8_t, 32>;
  Digest weights{};                  // SHA-256 of the configuration and every tensor
  std::optional<Digest> tokenizer;   // SHA-256 of the tokenizer's spec; none without a tokenizer

  /// "weights=sha256:<64 hex>;tokenizer=sha256:<64 hex>" (or "tokenizer=none"): what exports record.
  [[nodiscard]] std::string to_string() const {
    return "weights=sha256:" + hex(weights) + ";tokenizer=" + (tokenizer ? "sha256:" + hex(*tokenizer) : "none");
  }

  [[nodiscard]] static std::string hex(Digest const& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(2 * d.size());
    for (std::uint8_t const b : d) {
      s.push_back(digits[b >> 4]);
      s.push_back(digits[b & 15]);
    }
    return s;
  }

  friend bool operator==(ModelIdentity const&, ModelIdentity const&) = default;
};

namespace detail {

// Every field goes in with its length or a fixed width, so two different inputs never feed the same bytes.
class IdentityHasher {
 public:
  void u64(std::uint64_t v) {
    std::uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
    h_.update(b, 8);
  }
  void f32(float v) { u64(std::bit_cast<std::uint32_t>(v)); }
  void str(std::string_view s) {
    u64(s.size());
    h_.update(s.data(), s.size());
  }
  void bytes(void const* p, std::size_t n) {
    u64(n);
    h_.update(p, n);
  }
  void optional_id(std::optional<TokenId> id) {
    u64(id ? 1 : 0);
    u64(id ? static_cast<std::uint64_t>(static_cast<std::uint32_t>(*id)) : 0);
  }
  [[nodiscard]] Sha256::Digest finish() { return h_.finish(); }

 private:
  Sha256 h_;
};

inline void hash_matrix(IdentityHasher& h, std::string_view name, WeightMatrix const& m) {
  h.str(name);
  h.u64(static_cast<std::uint32_t>(m.type));
  h.u64(m.rows);
  h.u64(m.cols);
  h.bytes(m.data, m.size_bytes());
}

inline void hash_vector(IdentityHasher& h, std::string_view name, std::span<float const> v) {
  h.str(name);
  h.u64(static_cast<std::uint32_t>(WeightType::f32));
  h.u64(v.size());
  h.u64(1);
  h.bytes(v.data(), v.size_bytes());
}

}  // namespace detail

/// SHA-256 of the configuration and every tensor of `w` (see the header comment).
[[nodiscard]] inline ModelIdentity::Digest weights_digest(LlamaWeights const& w) {
  detail::IdentityHasher h;
  h.str("piecrust.model_identity.weights.v1");
  LlamaConfig const& c = w.config;
  h.str(c.arch);
  for (std::size_t const v : {c.vocab_size, c.hidden, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.ffn,
                              c.context_length, c.rope.rotary_dim}) {
    h.u64(v);
  }
  h.f32(c.rms_eps);
  h.f32(c.rope.theta);
  h.u64(static_cast<std::uint64_t>(c.rope.style));
  h.f32(c.rope.llama3.factor);
  h.f32(c.rope.llama3.low_freq_factor);
  h.f32(c.rope.llama3.high_freq_factor);
  h.u64(c.rope.llama3.original_max_position);
  h.u64(c.tied_embeddings ? 1 : 0);
  h.u64(c.qkv_bias ? 1 : 0);

  detail::hash_matrix(h, "token_embd.weight", w.token_embd);
  if (!c.tied_embeddings) detail::hash_matrix(h, "output.weight", w.lm_head);
  detail::hash_vector(h, "output_norm.weight", w.output_norm);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    LlamaLayerWeights const& L = w.layers[l];
    std::string const p = "blk." + std::to_string(l) + ".";
    detail::hash_vector(h, p + "attn_norm.weight", L.attn_norm);
    detail::hash_matrix(h, p + "attn_q.weight", L.wq);
    detail::hash_matrix(h, p + "attn_k.weight", L.wk);
    detail::hash_matrix(h, p + "attn_v.weight", L.wv);
    detail::hash_matrix(h, p + "attn_output.weight", L.wo);
    detail::hash_vector(h, p + "attn_q.bias", L.bq);
    detail::hash_vector(h, p + "attn_k.bias", L.bk);
    detail::hash_vector(h, p + "attn_v.bias", L.bv);
    detail::hash_vector(h, p + "ffn_norm.weight", L.ffn_norm);
    detail::hash_matrix(h, p + "ffn_gate.weight", L.gate);
    detail::hash_matrix(h, p + "ffn_up.weight", L.up);
    detail::hash_matrix(h, p + "ffn_down.weight", L.down);
  }
  return h.finish();
}

/// SHA-256 of everything `t` was built from.
[[nodiscard]] inline ModelIdentity::Digest tokenizer_digest(Tokenizer const& t) {
  TokenizerSpec const& s = t.spec();
  detail::IdentityHasher h;
  h.str("piecrust.model_identity.tokenizer.v1");
  h.u64(static_cast<std::uint64_t>(s.model));
  h.str(s.pre);
  h.u64(s.tokens.size());
  for (std::string const& tok : s.tokens) h.str(tok);
  h.u64(s.types.size());
  for (TokenType const ty : s.types) h.u64(static_cast<std::uint32_t>(ty));
  h.u64(s.scores.size());
  for (float const sc : s.scores) h.f32(sc);
  h.u64(s.merges.size());
  for (std::string const& m : s.merges) h.str(m);
  for (auto const id : {s.bos, s.eos, s.unk, s.eot, s.pad}) h.optional_id(id);
  h.u64(s.add_bos ? 1 : 0);
  h.u64(s.add_eos ? 1 : 0);
  h.u64(s.add_space_prefix ? 1 : 0);
  return h.finish();
}

/// The identity of a model with weights `w`, used with `tokenizer` (nullptr: none).
[[nodiscard]] inline ModelIdentity model_identity(LlamaWeights const& w, Tokenizer const* tokenizer = nullptr) {
  ModelIdentity id;
  id.weights = weights_digest(w);
  if (tokenizer != nullptr) id.tokenizer = tokenizer_digest(*tokenizer);
  return id;
}

}  // namespace piecrust
