#pragma once
// The engine's side of a step's logits: each pass's rows as logit_step entries (kernels/logit_step.hpp) and
// each pass's samples and probes read back from logit_step's results. Host bookkeeping only: the logits stay
// in the model's space.

#include <piecrust/kernels/logit_step.hpp>
#include <piecrust/runtime/context_state.hpp>
#include <piecrust/runtime/forward.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace piecrust::detail {

/// Logits rows of one pass: its sampled indices, then its probes.
inline std::size_t logit_rows_of(PassRequest const& pass) {
  std::size_t n = pass.probes.size();
  for (auto const& s : pass.samples) n += s.indices.size();
  return n;
}

/// The plan row of one draw with `sampler`, keyed `key`, for the token after KV slot end - 1 of `table` (the
/// penalty window ends there), under `mask` (nullptr: every id). A custom sampler's row is the distribution it
/// is handed: softmax(logits / T) at its temperature, or the most likely id alone at T = 0.
inline LogitRowPlan sample_row_plan(SamplerSpec const& sampler, SampleKey key, PageTable const& table, std::size_t end,
                                    LogitMask const* mask) {
  if (sampler.is_custom()) {
    float const t = sampler.custom_temperature();
    return {t > 0.0f ? logit_task::TopK{0, t} : logit_task::TopK{1, 1.0f}, mask};
  }
  logit_task::Sample task{sampler.params(), key, {}, {}};
  task.logit_bias.assign(sampler.logit_bias().begin(), sampler.logit_bias().end());
  if (task.params.penalties.active()) {
    // The penalty window: the newest tokens up to the sampled one's input (prompt included, as llama.cpp counts).
    std::size_t const begin = end - std::min<std::size_t>(end, task.params.penalties.last_n);
    task.recent.reserve(end - begin);
    for (std::size_t slot = begin; slot < end; ++slot) task.recent.push_back(table.token(slot).token);
  }
  return {std::move(task), mask};
}

/// The token a sample row gives and its ln p (see ForwardOutput::sampled_logprobs): the kernel's draw, or a
/// custom sampler's pick from the distribution it is handed (on the host, from the row's result).
inline std::pair<std::uint32_t, float> sampled_token(SamplerSpec const& sampler, LogitRowResult& r) {
  if (!sampler.is_custom()) return {r.token, r.logprob};
  std::size_t allowed = r.ids.size();
  while (allowed > 1 && r.values[allowed - 1] == 0.0f) --allowed;
  if (sampler.custom_temperature() == 0.0f) {
    allowed = 1;
    r.values[0] = 1.0f;  // the T -> 0 limit: the most likely id is certain
  }
  std::uint32_t const token = sampler.custom_fn()(std::span<std::uint32_t const>(r.ids).first(allowed),
                                                  std::span<float const>(r.values).first(allowed));
  float logprob = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < allowed; ++j) {
    if (r.ids[j] == token) logprob = std::log(r.values[j]);  // the distribution the sampler was handed
  }
  return {token, logprob};
}

/// Appends the pass's rows to the step's plan (in logit_rows order). Checks the pass's entries first, so a bad
/// sampler or mask fails this pass only; draws consume the context's sample keys in order.
inline void plan_logit_rows(PassRequest& pass, std::uint64_t seed, std::size_t vocab, std::vector<LogitRowPlan>& plan) {
  ContextState& cs = *pass.ctx;
  LogitMask const* mask = pass.logit_mask.empty() ? nullptr : &pass.logit_mask;
  std::vector<LogitRowPlan> mine;
  for (auto const& s : pass.samples) {
    for (std::size_t k = 0; k < s.indices.size(); ++k) {
      // The page table already holds this pass's tokens: the sampled input is slot `end - 1`.
      std::size_t const end = cs.table.seq_len() - pass.tokens.size() + pass.prefix + s.indices[k] + 1;
      mine.push_back(sample_row_plan(s.sampler, SampleKey{seed, cs.id, cs.sample_step + k}, cs.table, end, mask));
    }
  }
  for (auto const& pr : pass.probes) {
    std::visit(
        [&](auto const& kind) {
          using K = std::decay_t<decltype(kind)>;
          if constexpr (std::is_same_v<K, Logits>) {
            mine.push_back({logit_task::Raw{}, nullptr});
          } else if constexpr (std::is_same_v<K, Distribution>) {
            mine.push_back({logit_task::TopK{kind.k, kind.temperature}, nullptr});
          } else if constexpr (std::is_same_v<K, Logprob>) {
            mine.push_back({logit_task::Logprobs{{kind.id}, 1.0f}, nullptr});
          } else if constexpr (std::is_same_v<K, Logprobs>) {
            mine.push_back({logit_task::Logprobs{kind.ids, 1.0f}, nullptr});
          } else {
            mine.push_back({logit_task::Entropy{kind.temperature}, nullptr});
          }
        },
        pr.kind);
  }
  validate_logit_plan(mine, vocab);
  std::size_t draws = 0;
  for (auto const& s : pass.samples) draws += s.indices.size();
  cs.sample_step += draws;
  plan.insert(plan.end(), mine.begin(), mine.end());
}

/// Samples and probes of one pass, from the step's results starting at `row`.
inline void answer_pass(PassRequest& pass, std::vector<LogitRowResult>& results, std::size_t row) {
  pass.output.pass = pass.serial;
  for (auto const& s : pass.samples) {
    ForwardOutput::SampleResult res;
    for (std::size_t k = 0; k < s.indices.size(); ++k, ++row) {
      auto const [token, logprob] = sampled_token(s.sampler, results[row]);
      res.tokens.push_back(token);
      res.logprobs.push_back(logprob);
    }
    pass.output.samples.push_back(std::move(res));
  }
  for (std::size_t i = 0; i < pass.probes.size(); ++i, ++row) {
    ForwardOutput::ProbeResult res;
    res.ids = std::move(results[row].ids);
    res.values = std::move(results[row].values);
    if (auto const* lp = std::get_if<Logprob>(&pass.probes[i].kind)) res.ids = {lp->id};
    if (auto const* lps = std::get_if<Logprobs>(&pass.probes[i].kind)) res.ids = lps->ids;
    pass.output.probes.push_back(std::move(res));
  }
}

}  // namespace piecrust::detail
