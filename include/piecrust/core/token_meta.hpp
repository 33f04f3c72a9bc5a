#pragma once
// TokenMeta: what a page table records about each KV slot it holds.

#include <cstdint>

namespace piecrust {

struct TokenMeta {
  std::uint32_t token = 0;     // vocabulary id
  std::uint32_t position = 0;  // RoPE position the K/V was computed at
  bool masked = false;         // set by mask_token_range: no later pass should attend to it

  friend bool operator==(TokenMeta const&, TokenMeta const&) = default;
};

}  // namespace piecrust
