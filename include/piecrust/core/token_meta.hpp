#pragma once
// TokenMeta: what a page table records about each KV slot it holds. Everything the slot's K/V depends on
// besides the slots before it, so that two committed pages with equal TokenMeta (and equal pages before
// them) hold the same K/V and can be shared.

#include <cstdint>

namespace piecrust {

struct TokenMeta {
  std::uint32_t token = 0;     // vocabulary id
  std::uint32_t position = 0;  // RoPE position the K/V was computed at
  bool masked = false;         // set by mask_token_range: no later pass should attend to it
  std::uint64_t adapter = 0;   // the LoRA adapter the K/V was computed under (AdapterId::value; 0: none)

  friend bool operator==(TokenMeta const&, TokenMeta const&) = default;
};

}  // namespace piecrust
