#pragma once
// Endless generation in bounded memory: sliding-window attention with KV pages really freed.
//
// Every decode step:
//   1. KV slots that no future token will attend to are marked masked (Context::mask_token_range);
//   2. committed pages whose slots are all masked go back to the pool (Context::drop_masked_kv_pages) — the
//      remaining slots keep their RoPE positions, so positions keep growing while memory does not;
//   3. the pass's attention rows say what the new token sees: AttentionMask::window(kv, window) (the last
//      `window` KV slots), or with `sink` > 0 AttentionMask::sink_window(kv, sink, window): StreamingLLM's
//      attention sink (Xiao et al. 2023), the first `sink` slots stay visible forever.
// Polarity (DESIGN.md): 0 = attend, 1 = masked. Pie's sliding-window snippet `[evict_count, window_size]` is
// written in the opposite polarity; here that row is `[0, evict_count, window_size]`, i.e. window(kv, window).

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace piecrust::examples {

struct WindowOptions {
  std::size_t window = 64;  // KV slots each new token attends to (the most recent ones, itself included)
  std::size_t sink = 0;     // first slots kept visible forever (attention sink); 0 = a plain window
  std::size_t steps = 256;  // tokens to generate
  SamplerSpec sampler = samplers::greedy();
};

struct WindowStats {
  std::vector<std::uint32_t> tokens;  // generated
  std::size_t max_pages_in_use = 0;   // the pool's peak (pages not free), sampled after every step
  std::size_t max_context_pages = 0;  // this context's peak committed + working pages
  std::size_t pages_dropped = 0;      // pages handed back to the pool by drop_masked_kv_pages
  std::uint32_t last_position = 0;    // RoPE position of the newest KV slot
};

/// Generates `opt.steps` tokens after `prompt` with every token attending to a bounded window (plus the sink).
/// `on_step(step, ctx)` is called after every step (for progress output); may be empty.
template <class M>
Task<WindowStats> windowed_generate(Engine<M>& engine, Context<M>& ctx, std::span<std::uint32_t const> prompt,
                                    WindowOptions opt, std::function<void(std::size_t, Context<M> const&)> on_step = {}) {
  WindowStats st;
  ctx.fill(prompt);
  for (std::size_t step = 0; step < opt.steps; ++step) {
    std::size_t const kv = ctx.seq_len();  // slots already computed
    // The earliest slot any upcoming row can see is kv + 1 - window (the first new token's window); everything
    // before it, except the sink, is dead.
    if (kv + 1 > opt.window + opt.sink) ctx.mask_token_range(std::min(opt.sink, kv), kv + 1 - opt.window);
    st.pages_dropped += ctx.drop_masked_kv_pages();

    std::size_t const first = ctx.seq_len();  // slot of the first new token (after the drop)
    std::size_t const n = ctx.pending_tokens().size();
    auto fwd = ctx.forward();
    fwd.input_pending();
    std::vector<AttentionMask> rows;  // [n]: new token i sees slots [0, first + i]
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t const total = first + i + 1;
      // The dropped slots are gone from the table, so the window counts the slots still held.
      rows.push_back(opt.sink > 0 ? AttentionMask::sink_window(total, opt.sink, opt.window)
                                  : AttentionMask::window(total, opt.window));
    }
    fwd.attention_mask(std::move(rows));
    auto const h = fwd.sample({n - 1}, opt.sampler);
    ForwardOutput out = co_await fwd.execute();
    std::uint32_t const t = out.token(h);
    st.tokens.push_back(t);
    ctx.fill(std::span(&t, 1));

    st.max_pages_in_use = std::max(st.max_pages_in_use, engine.pool().num_pages() - engine.pool().free_count());
    st.max_context_pages = std::max(st.max_context_pages, ctx.page_table().committed_pages().size() +
                                                              ctx.page_table().working_pages().size());
    st.last_position = ctx.page_table().token(ctx.seq_len() - 1).position;
    if (on_step) on_step(step, ctx);
  }
  co_return st;
}

}  // namespace piecrust::examples
