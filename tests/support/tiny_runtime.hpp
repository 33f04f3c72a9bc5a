#pragma once
// Shared by the runtime and example tests: the tiny random Llama on the space under test, engine options and
// random prompts.
//
// The same test files run on every space that is built: a build compiles them again with
// PIECRUST_TEST_SPACE_HEADER naming a header that defines `piecrust::testing::TestSpace` and
// `piecrust::testing::make_test_space()` (tests/kokkos/kokkos_test_space.hpp, the CUDA emulation's
// tests/gpu/emulation/cuda_test_space.hpp). Without it the space is Host.
#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <cstdint>
#include <random>
#include <vector>

#if defined(PIECRUST_TEST_SPACE_HEADER)
#include PIECRUST_TEST_SPACE_HEADER
#else
namespace piecrust::testing {
using TestSpace = Host;
inline Host make_test_space() { return Host{}; }
}  // namespace piecrust::testing
#endif

namespace piecrust::testing {

using Tiny = LlamaModel<TestSpace>;

/// Long randomized tests run 1 / divisor of their rounds under the GPU emulation, which runs every kernel
/// thread by thread on the host; what they check (the runtime's page accounting) does not depend on the space.
#if defined(PIECRUST_GPU_EMULATION)
inline constexpr int emulation_rounds_divisor = 6;
#else
inline constexpr int emulation_rounds_divisor = 1;
#endif

/// Engine options for tests: `pages` pages of `page_size` tokens, sampling seed `seed`.
inline EngineOptions engine_options(std::size_t pages = 256, std::uint32_t page_size = 16, std::uint64_t seed = 7) {
  EngineOptions o;
  o.num_pages = pages;
  o.page_size = page_size;
  o.seed = seed;
  return o;
}

/// One tiny random Llama per test binary (vocabulary 512), on the space under test.
inline Tiny& tiny_model() {
  static Tiny model(tiny_llama_weights(3), make_test_space());
  return model;
}

/// One pass of a sliding-window loop: masks every KV slot but the last `window`, frees the pages that are
/// wholly masked, and returns a pass over the pending tokens whose row for KV slot i (i + 1 slots visible
/// at most) is row(i, masked), `masked` = the slots masked before it.
template <class M, class Row>
Forward<M> windowed_pass(Context<M>& ctx, std::size_t window, Row row) {
  std::size_t const len = ctx.seq_len();
  if (len > window) ctx.mask_token_range(0, len - window);
  ctx.drop_masked_kv_pages();
  std::size_t const kv_after = ctx.seq_len() + ctx.pending_tokens().size();
  std::size_t const masked = ctx.page_table().seq_len() > window ? ctx.page_table().seq_len() - window : 0;
  Forward<M> f = ctx.forward();
  f.input_pending();
  std::vector<AttentionMask> rows;  // [pending]
  for (std::size_t i = ctx.seq_len(); i < kv_after; ++i) rows.push_back(row(i, masked));
  f.attention_mask(rows);
  return f;
}

/// n random token ids of the tiny vocabulary, reproducible from `seed`.
inline std::vector<std::uint32_t> random_prompt(std::uint32_t seed, std::size_t n) {
  std::mt19937 rng(seed);
  std::vector<std::uint32_t> p(n);
  for (auto& t : p) t = rng() % 512;
  return p;
}

}  // namespace piecrust::testing
