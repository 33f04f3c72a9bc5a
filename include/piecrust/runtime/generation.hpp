#pragma once
// The generation loops of a Context (Context::generate, Context::generate_with_drafter), written against
// Context's public API: each step is one Forward pass awaited like any program's.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/runtime/constraint.hpp>
#include <piecrust/runtime/context_state.hpp>
#include <piecrust/runtime/drafter.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/sampler.hpp>
#include <piecrust/runtime/stop_condition.hpp>
#include <piecrust/runtime/task.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace piecrust {

/// What a generation produced. The token that triggered the stop condition is included (Pie's behaviour).
struct Generation {
  std::vector<std::uint32_t> tokens;
  std::string text;  // the tokens decoded, special tokens left out (empty without a tokenizer)
  std::size_t passes = 0;  // forward passes the generation took (speculation makes this < tokens.size())
  /// [tokens.size()] ln p(tokens[i]) under the distribution the sampler drew tokens[i] from, before any
  /// cut-off: softmax(logits / T) over the ids the constraints allow (renormalized over them; every id without
  /// constraints), T = the sampler's temperature (1 for greedy and multinomial, a custom sampler's own;
  /// speculative generation is greedy). Top-k / top-p / min-p truncation is not renormalized in. Natural log, <= 0.
  std::vector<float> logprobs;
};

namespace detail {

template <class Ctx>
void open_assistant_turn(Ctx& ctx) {
  if (ctx.state().user_turn_open) ctx.fill_generation_prompt();
}

/// Whether the model's context would be full with `extra` more tokens after the KV and pending ones: in KV
/// slots, or in positions (explicit positions may run ahead of the slots; automatic ones must not pass the limit).
template <class Ctx>
bool context_full_after(Ctx& ctx, std::size_t extra) {
  std::size_t const length = ctx.engine().shape().context_length;
  std::uint64_t const limit = position_limit(length);
  ContextState const& cs = ctx.state();
  std::uint64_t const more = cs.pending.size() + extra;
  return (length > 0 && cs.table.seq_len() + more >= length) || cs.table.next_position() + more >= limit;
}

inline void try_commit(ContextState& cs, std::size_t k) {
  try {
    cs.table.commit_working_pages(k);
  } catch (InvalidState const&) {
    // Repeated or reordered positions: the pages stay working (nothing changed).
  }
}

/// The first token of a generation from a context with nothing pending: drawn from the logits its flush kept
/// (no pass), then pending like every sampled token. Throws InvalidState (the engine's check, naming `op`) when
/// it keeps none.
template <class Ctx>
std::uint32_t sample_kept(Ctx& ctx, Generation& g, SamplerSpec const& sampler, LogitMask const* mask, char const* op) {
  ContextState& cs = ctx.state();
  auto const [t, logprob] = ctx.engine().sample_next_logits(cs, sampler, mask, op);
  g.tokens.push_back(t);
  g.logprobs.push_back(logprob);
  cs.pending.push_back(t);
  cs.next_logits.reset();  // what comes next is the pending token now
  return t;
}

/// Generates until `stop` fires (or the model's context is full), sampling with `sampler` under every
/// constraint's mask. Throws InvalidState when there is nothing to continue from: nothing pending and no
/// logits kept by a flush.
template <class Ctx, Constraint... Cs>
Task<Generation> generate(Ctx& ctx, SamplerSpec sampler, StopCondition stop, Cs&... constraints) {
  open_assistant_turn(ctx);
  ContextState& cs = ctx.state();
  Generation g;
  if (cs.pending.empty()) {
    LogitMask mask;
    if constexpr (sizeof...(Cs) > 0) mask = combined_mask(constraints...);
    [[maybe_unused]] std::uint32_t const t = sample_kept(ctx, g, sampler, &mask, "Context::generate");
    (constraints.advance(t), ...);
    if (stop.should_stop(g.tokens) || context_full_after(ctx, 0)) {
      g.text = ctx.engine().decode_text(g.tokens);
      co_return g;
    }
  }
  for (;;) {
    auto fwd = ctx.forward();
    fwd.input_pending();
    if constexpr (sizeof...(Cs) > 0) fwd.mask(combined_mask(constraints...));
    auto const h = fwd.sample({cs.pending.size() - 1}, sampler);
    ForwardOutput out = co_await fwd.execute();
    ++g.passes;
    std::uint32_t const t = out.token(h);
    (constraints.advance(t), ...);
    g.tokens.push_back(t);
    g.logprobs.push_back(out.sampled_logprobs(h).front());
    cs.pending.push_back(t);
    if (stop.should_stop(g.tokens) || context_full_after(ctx, 0)) break;
  }
  g.text = ctx.engine().decode_text(g.tokens);
  co_return g;
}

/// Greedy generation with speculative drafts: every draft (chain or tree) is verified in one pass, the
/// longest agreeing path is kept and the rest rolled back. The tokens equal plain greedy generation's as
/// long as the model computes a row identically in a batch of 1 + max_draft rows and in a batch of one
/// (true of the host backend for quantized weights at any batch size, where each output is its row's own
/// integer dot product; with f32 weights OpenBLAS's sgemm is row-invariant only up to 12 rows).
template <class Ctx, Drafter D>
Task<Generation> generate_with_drafter(Ctx& ctx, D& drafter, StopCondition stop, std::size_t max_draft) {
  open_assistant_turn(ctx);
  ContextState& cs = ctx.state();
  Generation g;
  if (cs.pending.empty()) {
    sample_kept(ctx, g, samplers::greedy(), nullptr, "Context::generate_with_drafter");
    if (stop.should_stop(g.tokens) || context_full_after(ctx, 0)) {
      g.text = ctx.engine().decode_text(g.tokens);
      co_return g;
    }
  }
  {
    auto const all = ctx.token_ids();
    drafter.update(all);
  }
  std::uint32_t const ps = cs.table.page_size();
  for (;;) {
    // A prompt is prefilled in a pass of its own, exactly as plain generation does, so every row is computed
    // in the same batch shape as there: the host GEMM gives bit-identical rows only for equal shapes (and
    // for small batches), so verification passes stay at most 1 + max_draft tokens.
    Draft draft = cs.pending.size() > 1 ? Draft{} : drafter.draft();
    draft.validate();
    std::size_t const length = ctx.engine().shape().context_length;
    std::size_t const room = length > 0 ? length - std::min(length, cs.table.seq_len() + 1) : max_draft;
    std::size_t const np = cs.pending.size();
    // A draft token at depth d gets position last_pos + d, d <= keep: all of them stay below the limit.
    std::uint64_t const last_pos = std::uint64_t{cs.table.next_position()} + np - 1;
    std::uint64_t const limit = position_limit(length);
    std::size_t const position_room = last_pos + 1 < limit ? static_cast<std::size_t>(limit - 1 - last_pos) : 0;
    std::size_t const keep = std::min({draft.size(), max_draft, room, position_room});
    draft.tokens.resize(keep);
    draft.parents.resize(keep);

    std::size_t const kv_before = cs.table.seq_len();
    auto fwd = ctx.forward();
    fwd.input_pending();
    std::vector<std::uint32_t> positions(keep);
    for (std::size_t i = 0; i < keep; ++i) positions[i] = static_cast<std::uint32_t>(last_pos + draft.depth(i));
    fwd.input_at(draft.tokens, positions);
    if (keep > 0) {
      std::vector<AttentionMask> rows = AttentionMask::causal_rows(kv_before, np - 1);
      auto const tree = draft.verification_rows(kv_before + np - 1);
      rows.insert(rows.end(), tree.begin(), tree.end());
      fwd.attention_mask(std::move(rows));
    }
    std::vector<std::size_t> at(keep + 1);
    for (std::size_t i = 0; i <= keep; ++i) at[i] = np - 1 + i;
    auto const h = fwd.sample(at, samplers::greedy());
    fwd.defer_commit();
    ForwardOutput out = co_await fwd.execute();
    ++g.passes;
    auto const picked = out.tokens(h);  // [keep + 1]: after the last pending token, then after each draft token
    auto const picked_logprobs = out.sampled_logprobs(h);  // [keep + 1]

    // Walk the tree: follow the child whose token equals the model's choice.
    std::vector<std::size_t> path;
    std::uint32_t next = picked[0];
    std::int32_t node = -1;
    for (;;) {
      std::int32_t found = -1;
      for (std::size_t i = 0; i < keep; ++i) {
        if (draft.parents[i] == node && draft.tokens[i] == next) {
          found = static_cast<std::int32_t>(i);
          break;
        }
      }
      if (found < 0) break;
      path.push_back(static_cast<std::size_t>(found));
      node = found;
      next = picked[static_cast<std::size_t>(found) + 1];
    }
    std::vector<std::uint32_t> emitted;
    std::vector<float> emitted_logprobs;  // the first token is picked after the pending ones, each next one after its parent
    for (std::size_t k = 0; k < path.size(); ++k) {
      emitted.push_back(draft.tokens[path[k]]);
      emitted_logprobs.push_back(picked_logprobs[k == 0 ? 0 : path[k - 1] + 1]);
    }
    emitted.push_back(next);
    emitted_logprobs.push_back(picked_logprobs[path.empty() ? 0 : path.back() + 1]);

    // Where the stop condition fires, the rest of the emitted tokens are dropped.
    std::size_t used = 0;
    bool stopped = false;
    for (std::uint32_t const t : emitted) {
      g.tokens.push_back(t);
      g.logprobs.push_back(emitted_logprobs[used]);
      ++used;
      if (stop.should_stop(g.tokens) || context_full_after(ctx, used)) {
        stopped = true;
        break;
      }
    }
    // KV now holds the pending tokens and all `keep` draft tokens. Keep the accepted prefix when it is
    // contiguous (a chain); otherwise drop every draft token and re-feed the accepted ones.
    bool const contiguous = [&] {
      for (std::size_t k = 0; k < path.size(); ++k) {
        if (path[k] != k) return false;
      }
      return true;
    }();
    // Accepted drafts that stay: the ones emitted, except the last emitted token, which stays pending.
    std::size_t const accepted_in_kv = contiguous ? std::min(path.size(), used - 1) : 0;
    cs.table.truncate_working_page_tokens(keep - accepted_in_kv);
    std::size_t const full = cs.table.working_token_count() / ps;
    if (full > 0) try_commit(cs, full);
    if (!contiguous) {
      for (std::size_t k = 0; k + 1 < used; ++k) cs.pending.push_back(emitted[k]);
    }
    cs.pending.push_back(emitted[used - 1]);
    drafter.update(std::span(emitted).first(used));
    if (stopped) break;
  }
  g.text = ctx.engine().decode_text(g.tokens);
  co_return g;
}

}  // namespace detail
}  // namespace piecrust
