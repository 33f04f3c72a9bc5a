#pragma once
// The checks a Llama-family forward runs on a step before it touches the KV cache: every size and index of
// the batch against the model's configuration and the cache, so that a bad batch throws a typed error
// naming the field and value, and nothing is half-applied.

#include <piecrust/core/error.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/llama_config.hpp>

#include <cstddef>
#include <string_view>

namespace piecrust::detail {

inline void check_llama_batch(std::string_view op, LlamaConfig const& c, std::size_t kv_layers, std::size_t kv_heads,
                              std::size_t kv_head_dim, std::size_t page_size, ForwardBatch const& batch,
                              std::size_t logits_size, std::size_t num_window_pages = 0) {
  std::size_t const T = batch.tokens.size();
  if (kv_layers != c.num_layers || kv_heads != c.num_kv_heads || kv_head_dim != c.head_dim) {
    fail<InvalidArgument>(op, ": kv cache has ", kv_layers, " layers x ", kv_heads, " heads x ", kv_head_dim,
                          ", the model needs ", c.num_layers, " x ", c.num_kv_heads, " x ", c.head_dim);
  }
  if (batch.positions.size() != T) {
    fail<InvalidArgument>(op, ": positions.size() = ", batch.positions.size(), " != tokens.size() = ", T);
  }
  for (std::size_t t = 0; t < T; ++t) {
    if (batch.tokens[t] < 0 || static_cast<std::size_t>(batch.tokens[t]) >= c.vocab_size) {
      fail<OutOfRange>(op, ": tokens[", t, "] = ", batch.tokens[t], " is outside the vocabulary of ", c.vocab_size);
    }
  }
  for (std::size_t r = 0; r < batch.logit_rows.size(); ++r) {
    if (batch.logit_rows[r] >= T) {
      fail<OutOfRange>(op, ": logit_rows[", r, "] = ", batch.logit_rows[r], " >= num_tokens = ", T);
    }
  }
  if (logits_size != batch.logit_rows.size() * c.vocab_size) {
    fail<InvalidArgument>(op, ": logits.size() = ", logits_size, ", expected ", batch.logit_rows.size(), " x ", c.vocab_size);
  }
  auto const& pb = batch.pages;
  if (pb.qo_indptr.size() != pb.batch_size() + 1 || pb.kv_indptr.size() != pb.batch_size() + 1 ||
      (pb.batch_size() > 0 && pb.qo_indptr.back() != T) || (pb.batch_size() == 0 && T != 0)) {
    fail<InvalidArgument>(op, ": page table sizes (qo_indptr ", pb.qo_indptr.size(), ", kv_indptr ", pb.kv_indptr.size(),
                          ", kv_last_page_len ", pb.batch_size(), ") do not describe ", T, " tokens");
  }
  for (std::size_t b = 0; b < pb.batch_size(); ++b) {
    if (pb.qo_indptr[b + 1] < pb.qo_indptr[b] || pb.kv_indptr[b + 1] < pb.kv_indptr[b] ||
        pb.kv_indptr[b + 1] > pb.kv_indices.size()) {
      fail<InvalidArgument>(op, ": request ", b, " has decreasing indptr or kv_indptr past kv_indices");
    }
    if (pb.num_pages(b) > 0 && (pb.kv_last_page_len[b] == 0 || pb.kv_last_page_len[b] > page_size)) {
      fail<InvalidArgument>(op, ": kv_last_page_len[", b, "] = ", pb.kv_last_page_len[b], " must be in [1, ", page_size, "]");
    }
    if (pb.kv_len(b, page_size) < pb.qo_len(b)) {
      fail<InvalidArgument>(op, ": request ", b, " has kv length ", pb.kv_len(b, page_size), " < its ", pb.qo_len(b),
                            " new tokens (the page table must cover them)");
    }
  }
  // The window store: given exactly when the cache has one, one window page per page, ids inside it.
  auto const& w = batch.window;
  if ((num_window_pages > 0) != !w.kv_indices.empty()) {
    fail<InvalidArgument>(op, ": window.kv_indices.size() = ", w.kv_indices.size(), " but the cache has ", num_window_pages,
                          " window pages (the window pages are given exactly when the cache has a window store)");
  }
  if (num_window_pages == 0) return;
  if (w.kv_indices.size() != pb.kv_indices.size() || w.floor.size() != pb.batch_size()) {
    fail<InvalidArgument>(op, ": window.kv_indices.size() = ", w.kv_indices.size(), ", window.floor.size() = ", w.floor.size(),
                          " for ", pb.kv_indices.size(), " pages and ", pb.batch_size(), " requests");
  }
  for (std::size_t i = 0; i < w.kv_indices.size(); ++i) {
    if (w.kv_indices[i] >= num_window_pages) {
      fail<OutOfRange>(op, ": window.kv_indices[", i, "] = ", w.kv_indices[i], " >= num_window_pages = ", num_window_pages);
    }
  }
}

}  // namespace piecrust::detail
