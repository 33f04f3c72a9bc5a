#pragma once
// AdapterId: the handle of a LoRA adapter loaded into an Engine (Engine::load_adapter), selected for one
// pass with Forward::adapter.

#include <atomic>
#include <compare>
#include <cstdint>

namespace piecrust {

/// Ids are unique in the process, so the handle of an unloaded adapter or of another engine's adapter is
/// refused as unknown, never taken for a different adapter.
struct AdapterId {
  std::uint64_t value = 0;
  friend auto operator<=>(AdapterId const&, AdapterId const&) = default;
};

namespace detail {
inline AdapterId next_adapter_id() {
  static std::atomic<std::uint64_t> serial{1};
  return AdapterId{serial.fetch_add(1, std::memory_order_relaxed)};
}
}  // namespace detail

}  // namespace piecrust
