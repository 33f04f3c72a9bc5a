#pragma once
// KernelArgs: what the decode, prefill and merge kernels of one paged_attention call read and write.
// All pointers are device pointers; the plan arrays come from one upload of a TilePlan.

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/attention/device_utils.hpp"
#include "piecrust/backends/cuda/attention/tile_plan.hpp"

namespace piecrust::cuda::attention {

template <class T>
struct KernelArgs {
  float const* q = nullptr;  // [tokens][qo_heads][head_dim]
  T const* kv = nullptr;     // [num_pages][2][page_size][num_kv_heads][head_dim]
  std::uint32_t page_size = 0;
  std::uint32_t num_kv_heads = 0;
  std::uint32_t qo_heads = 0;
  std::uint32_t group = 0;        // qo_heads / num_kv_heads
  std::uint32_t head_blocks = 1;  // decode: CTAs per KV head (ceil(group / heads per CTA))
  detail::ScoreTransform transform{};

  RequestInfo const* requests = nullptr;    // [batch]
  std::uint32_t const* pages = nullptr;     // [kept pages]
  Entry const* entries = nullptr;           // [listed tiles]
  std::uint64_t const* words = nullptr;     // [mask words] bit set = attend
  WorkItem const* items = nullptr;          // [items] of the kernel being launched
  std::uint32_t const* part_offset = nullptr;  // [tokens + 1]

  float* out = nullptr;     // [tokens][qo_heads][head_dim]
  float* lse = nullptr;     // [tokens][qo_heads]
  float* part_v = nullptr;  // [partial slots][qo_heads][head_dim] normalized partial outputs
  float* part_s = nullptr;  // [partial slots][qo_heads] their natural-log lse
};

}  // namespace piecrust::cuda::attention
