#pragma once
// ForwardBatch: one model step over a ragged batch of requests (what the runtime's scheduler builds).

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/trim_plan.hpp>
#include <piecrust/kernels/paged_attention.hpp>
#include <piecrust/model/token_type.hpp>

#include <cstdint>
#include <span>

namespace piecrust {

class LoraAdapter;

/// Request b's new tokens are tokens[qo_indptr[b] .. qo_indptr[b+1]). Its page table (FlashInfer layout,
/// `pages`) already covers the new tokens: they are written at KV positions kv_len - qo_len ... kv_len - 1
/// of the request, in order. RoPE uses `positions`, which need not equal the KV positions (after
/// eviction or for speculative branches). `adapters`, when not empty, gives each request a LoRA adapter
/// applied to its tokens' attention projections (nullptr: none); the adapters must outlive the step.
/// `window`, when its indices are not empty, addresses the sliding-window layers' K/V in the cache's window
/// store: the window page of each page of `pages` (same kv_indptr), and per request the first KV slot those
/// layers may see (the slots before it have left the window for good; see PageTable::window_floor).
struct WindowPages {
  std::span<std::uint32_t const> kv_indices;  // [pages.kv_indptr[batch]] window page ids, or empty (no store)
  std::span<std::uint32_t const> floor;       // [batch] first visible KV slot of each request
};

struct ForwardBatch {
  std::span<TokenId const> tokens;           // [num_tokens]
  std::span<std::uint32_t const> positions;  // [num_tokens]
  PagedBatch pages;                          // qo_indptr [batch+1], kv_indptr [batch+1], kv_indices, kv_last_page_len [batch]
  AttentionSelection attention{};            // masks [num_tokens] / trims [batch], or empty for causal
  std::span<std::uint32_t const> logit_rows;  // [num_logits] token indices whose logits are computed
  std::span<LoraAdapter const* const> adapters{};  // [batch] per request, nullptr = none; empty = no adapter
  WindowPages window{};                            // the window store's pages, or empty
};

}  // namespace piecrust
