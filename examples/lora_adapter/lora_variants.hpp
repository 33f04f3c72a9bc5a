#pragma once
// LoRA variants: one prompt answered by the base model and by several LoRA adapters at once. Each variant is
// its own context (the prompt is prefilled under its adapter, so no pages are shared between variants), and
// the engine batches all of them into the same steps: requests with different adapters, or none, run in one
// model step, the base projections computed once and each adapter's low-rank update added to its own rows.
// Also: writing an adapter as a GGUF file in llama.cpp's LoRA layout, which Engine::load_adapter reads back.

#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::examples {

/// One way to answer: a name and an adapter (std::nullopt: the base model).
struct LoraVariant {
  std::string name;
  std::optional<AdapterId> adapter;
};

struct LoraAnswer {
  std::string name;
  Generation generation;
  /// Mean ln p of the generated tokens (Generation::logprobs), 0 for an empty generation.
  [[nodiscard]] double mean_logprob() const {
    auto const& lp = generation.logprobs;
    return lp.empty() ? 0.0 : std::accumulate(lp.begin(), lp.end(), 0.0) / static_cast<double>(lp.size());
  }
};

namespace detail {
template <class M>
Task<Generation> answer_with(Engine<M>& engine, std::vector<std::uint32_t> prompt, std::optional<AdapterId> adapter,
                             SamplerSpec sampler, StopCondition stop) {
  auto ctx = engine.create_context();
  ctx.set_adapter(adapter);
  ctx.fill(prompt);
  co_return co_await ctx.generate(std::move(sampler), std::move(stop));
}
}  // namespace detail

/// Every variant's answer to `prompt`, in the order given; all variants decode in the same engine steps.
template <class M>
Task<std::vector<LoraAnswer>> answer_with_adapters(Engine<M>& engine, std::span<std::uint32_t const> prompt,
                                                   std::vector<LoraVariant> variants, SamplerSpec sampler, StopCondition stop) {
  std::vector<Task<Generation>> work;
  for (LoraVariant const& v : variants) {
    work.push_back(detail::answer_with(engine, std::vector<std::uint32_t>(prompt.begin(), prompt.end()), v.adapter, sampler, stop));
  }
  auto gens = co_await engine.when_all(std::move(work));
  std::vector<LoraAnswer> out;
  for (std::size_t i = 0; i < gens.size(); ++i) out.push_back({variants[i].name, std::move(gens[i])});
  co_return out;
}

/// `adapter` as a GGUF LoRA adapter (llama.cpp's layout: general.type "adapter", adapter.type "lora",
/// adapter.lora.alpha, f32 tensors blk.N.<weight>.lora_a [rank][in] and .lora_b [out][rank]) for a base model
/// of architecture `arch`.
[[nodiscard]] inline std::vector<std::byte> lora_adapter_gguf(LoraAdapter const& adapter, std::string const& arch) {
  GgufWriter w;
  w.set("general.architecture", {arch});
  w.set("general.type", {std::string("adapter")});
  w.set("adapter.type", {std::string("lora")});
  w.set("adapter.lora.alpha", {adapter.alpha()});
  for (std::size_t l = 0; l < adapter.shape().num_layers; ++l) {
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      LoraPair const* p = adapter.pair(l, static_cast<LoraTarget>(t));
      if (p == nullptr) continue;
      std::string const base = LoraAdapter::tensor_name(l, static_cast<LoraTarget>(t));
      w.add_f32(base + ".lora_a", {p->in, p->rank}, p->a);   // ggml dims: row length first
      w.add_f32(base + ".lora_b", {p->rank, p->out}, p->b);
    }
  }
  return w.bytes();
}

}  // namespace piecrust::examples
