#pragma once
// Shared by the runtime and example tests: the tiny random Llama, engine options and random prompts.
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace piecrust::testing {

using Tiny = LlamaModel<Host>;

/// Engine options for tests: `pages` pages of `page_size` tokens, sampling seed `seed`.
inline EngineOptions engine_options(std::size_t pages = 256, std::uint32_t page_size = 16, std::uint64_t seed = 7) {
  EngineOptions o;
  o.num_pages = pages;
  o.page_size = page_size;
  o.seed = seed;
  return o;
}

/// One tiny random Llama per test binary (vocabulary 512).
inline Tiny& tiny_model() {
  static Tiny model(tiny_llama_weights(3));
  return model;
}

/// n random token ids of the tiny vocabulary, reproducible from `seed`.
inline std::vector<std::uint32_t> random_prompt(std::uint32_t seed, std::size_t n) {
  std::mt19937 rng(seed);
  std::vector<std::uint32_t> p(n);
  for (auto& t : p) t = rng() % 512;
  return p;
}

}  // namespace piecrust::testing
