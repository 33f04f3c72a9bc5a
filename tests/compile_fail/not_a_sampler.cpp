// Must not compile: a type without sample(ids, probs) -> id is not a piecrust::Sampler.
// With PIECRUST_COMPILE_FAIL_CONTROL defined, a conforming sampler is used instead and the file compiles.
#include <piecrust/runtime/sampler_concept.hpp>

#include <cstdint>
#include <span>

namespace {

struct GoodSampler {
  std::uint32_t sample(std::span<std::uint32_t const> ids, std::span<float const>) { return ids.front(); }
};

struct NotASampler {
  std::uint32_t pick(std::span<float const>) { return 0; }  // wrong name and signature
};

}  // namespace

std::uint32_t use_sampler() {
  std::uint32_t const ids[] = {7, 9};
  float const probs[] = {0.75f, 0.25f};
#ifdef PIECRUST_COMPILE_FAIL_CONTROL
  GoodSampler s;
#else
  NotASampler s;
#endif
  return piecrust::sample_with(s, ids, probs);
}
