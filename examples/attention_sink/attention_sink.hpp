#pragma once
// Attention sink (StreamingLLM, Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks"):
// a sliding window alone degrades once the first tokens leave it, because models park attention mass on them.
// Keeping the first `sink` slots visible forever (AttentionMask::sink_window rows) and dropping everything
// between the sink and the window keeps generation stable in bounded memory. The loop is the windowed one
// (examples/windowed_attention) with sink > 0: the sink's page is never dropped.

#include "windowed_attention/windowed_attention.hpp"

namespace piecrust::examples {

/// Generates `steps` tokens attending to the first `sink` slots and the last `window` ones.
template <class M>
Task<WindowStats> sink_generate(Engine<M>& engine, Context<M>& ctx, std::span<std::uint32_t const> prompt,
                                std::size_t sink, std::size_t window, std::size_t steps, SamplerSpec sampler,
                                std::function<void(std::size_t, Context<M> const&)> on_step = {}) {
  WindowOptions w;
  w.sink = sink;
  w.window = window;
  w.steps = steps;
  w.sampler = std::move(sampler);
  co_return co_await windowed_generate<M>(engine, ctx, prompt, w, std::move(on_step));
}

}  // namespace piecrust::examples
