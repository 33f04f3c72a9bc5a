#pragma once
// Packed prompts: several short prompts in ONE context, kept apart by ejKernel-style segment ids. The prefill
// is one pass over all prompts back to back (segment id = prompt index, each prompt at its own positions
// 0, 1, ...), and each greedy decode step is one pass with one token per prompt. A causal MaskInfo over the
// segment ids (Forward::attention_mask(MaskInfo)) lets every token see only its own prompt, so each prompt's
// tokens are the ones it gets alone.

#include <piecrust/mask_info.hpp>
#include <piecrust/runtime.hpp>
#include <piecrust/runtime/mask_info_rows.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace piecrust::examples {

struct PackedResult {
  std::vector<std::vector<std::uint32_t>> tokens;  // [prompts][n_tokens] greedy continuation of each prompt
  std::size_t passes = 0;                          // forward passes of the packed context: n_tokens
};

namespace detail {
/// The causal segment mask of a pass whose queries are the last q_ids.size() of the kv_ids slots.
inline MaskInfo packed_mask(std::vector<std::int32_t> const& q_ids, std::vector<std::int32_t> const& kv_ids) {
  auto const q = static_cast<std::int64_t>(q_ids.size()), k = static_cast<std::int64_t>(kv_ids.size());
  MaskInfo const segments = maskinfo::from_segments(maskinfo::IntTensor(maskinfo::Shape{1, q}, q_ids),
                                                    maskinfo::IntTensor(maskinfo::Shape{1, k}, kv_ids));
  return maskinfo::apply_causal(segments, k - q);  // bottom-right aligned: query i is slot k - q + i
}
}  // namespace detail

/// Greedy `n_tokens` tokens (>= 1) after each of `prompts` (each non-empty), all decoded in `ctx` (empty):
/// n_tokens passes in all, however many prompts.
template <class M>
Task<PackedResult> packed_greedy(Context<M>& ctx, std::vector<std::vector<std::uint32_t>> prompts, std::size_t n_tokens) {
  std::vector<std::uint32_t> tokens, positions;  // this pass's inputs
  std::vector<std::int32_t> q_ids, kv_ids;       // segment id of each input / of each KV slot so far
  std::vector<std::size_t> last;                 // [prompts] index of each prompt's last input
  std::vector<std::uint32_t> next_position;      // [prompts]
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    for (std::size_t i = 0; i < prompts[p].size(); ++i) {
      tokens.push_back(prompts[p][i]);
      positions.push_back(static_cast<std::uint32_t>(i));
      q_ids.push_back(static_cast<std::int32_t>(p));
    }
    last.push_back(tokens.size() - 1);
    next_position.push_back(static_cast<std::uint32_t>(prompts[p].size()));
  }
  PackedResult r;
  r.tokens.resize(prompts.size());
  for (std::size_t step = 0; step < n_tokens; ++step) {
    kv_ids.insert(kv_ids.end(), q_ids.begin(), q_ids.end());
    auto f = ctx.forward();
    f.input_at(tokens, positions);
    f.attention_mask(detail::packed_mask(q_ids, kv_ids));
    auto const h = f.sample(last, samplers::greedy());
    ForwardOutput const out = co_await f.execute();
    ++r.passes;
    // The next pass: each prompt's new token, at the prompt's own next position.
    tokens.assign(out.tokens(h).begin(), out.tokens(h).end());
    positions.clear();
    q_ids.clear();
    last.clear();
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      r.tokens[p].push_back(tokens[p]);
      positions.push_back(next_position[p]++);
      q_ids.push_back(static_cast<std::int32_t>(p));
      last.push_back(p);
    }
  }
  co_return r;
}

}  // namespace piecrust::examples
