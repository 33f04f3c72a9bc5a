#pragma once
// ContextState: what the engine keeps for one context (internal; users hold a Context).

#include <piecrust/core/page_pool.hpp>
#include <piecrust/core/page_table.hpp>
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/masked_slots.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace piecrust::detail {

struct ContextState {
  ContextState(PagePool& pool, std::uint64_t stream_id) : table(pool), id(stream_id) {}

  PageTable table;                     // KV pages and per-slot metadata
  std::vector<std::uint32_t> pending;  // [pending] filled tokens not yet in the KV cache
  std::uint64_t id;                    // the context's random stream (SampleKey::row)
  std::uint64_t sample_step = 0;       // draws made so far (SampleKey::step)
  bool user_turn_open = false;         // fill_user was the last fill: generate opens the assistant turn
  bool conversation_started = false;   // the chat template's begin() was filled
  MaskedSlots masked;                  // slots flagged by mask_token_range, as ranges (default attention rows)
  std::optional<AdapterId> adapter;    // LoRA adapter of the passes the context builds (Context::set_adapter)
  std::uint64_t pass_in_flight = 0;    // serial of the context's pass queued on the engine, 0 = none
  // [vocab] the next-token logits after the last KV slot, kept by the pass that computed it
  // (Forward::keep_next_logits, Context::flush), in the model's memory space; never written, so forks share it
  // (copy-on-write for free). Every later pass of the context drops it: it is valid only while nothing is
  // pending, and lets generate / decode_step_dist continue from a full flush.
  std::shared_ptr<float const> next_logits;
};

/// A process-wide serial for passes, so a handle can be checked against the output it is read on.
inline std::uint64_t next_pass_serial() {
  static std::atomic<std::uint64_t> serial{1};
  return serial.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace piecrust::detail
