#pragma once
// logit_step: every sampler and probe of one model step over the step's logits rows, which stay in the space's
// memory. Rows are grouped by what they need and each group is one kernel call over all of its rows:
//  * one `sample` over every Sample row, then `probe_logprobs` of the drawn tokens per distinct effective
//    temperature (the sampled token's ln p);
//  * one `probe_distribution` per distinct (k, temperature) of the TopK rows;
//  * one `probe_logprobs` per distinct temperature of the Logprobs rows (their id lists padded to the longest);
//  * one `probe_entropy` per distinct temperature of the Entropy rows;
//  * Raw rows copied in the space's memory (copy_in_space).
// Every output lands in one result arena in the space's memory, copied to the host once.
//
// probe_logprobs reads its ids on the host (the interface validates them there), so a step with Sample rows
// also copies the drawn tokens (4 bytes a row) to the host before their log-probabilities are computed; that
// is the only other device-to-host copy.
//
// Each row's result equals what the same kernel computes for that row alone: the kernels treat rows
// independently (their host, Cuda and Kokkos implementations alike).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include "piecrust/core/error.hpp"
#include "piecrust/core/logit_mask.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/memory_of.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/detail/logit_checks.hpp"
#include "piecrust/kernels/philox.hpp"
#include "piecrust/kernels/probe.hpp"
#include "piecrust/kernels/sample.hpp"
#include "piecrust/kernels/sampling_params.hpp"

namespace piecrust {

/// What one logits row of a step is read for.
namespace logit_task {
/// A token drawn by `sample` with `params`, `key` and the row's penalty inputs, and its ln p under
/// softmax(logits / T) over the ids the row's mask allows, T = params.effective_temperature() (the model's
/// logits: logit bias and penalties change what is drawn, not the reported ln p).
struct Sample {
  SamplingParams params{};
  SampleKey key{};
  std::vector<std::uint32_t> recent{};   // the row's newest tokens, oldest first, read by params.penalties
  std::vector<LogitBias> logit_bias{};   // distinct ids
};
/// The row itself, [vocab] (the row's mask does not apply).
struct Raw {};
/// The k most likely ids of softmax(logits / temperature) and their probabilities, as probe_distribution
/// orders them; k = 0: the whole vocabulary.
struct TopK {
  std::size_t k = 0;
  float temperature = 1.0f;
};
/// ln p(id) under softmax(logits / temperature), for each id.
struct Logprobs {
  std::vector<std::uint32_t> ids;
  float temperature = 1.0f;
};
/// The entropy of softmax(logits / temperature), in nats.
struct Entropy {
  float temperature = 1.0f;
};
}  // namespace logit_task

using LogitTask = std::variant<logit_task::Sample, logit_task::Raw, logit_task::TopK, logit_task::Logprobs, logit_task::Entropy>;

/// One row of the host-side plan of a step.
struct LogitRowPlan {
  LogitTask task;
  LogitMask const* mask = nullptr;  // host memory, alive during the call; nullptr or empty: every id allowed
};

/// What one row produced, on the host.
struct LogitRowResult {
  std::uint32_t token = 0;          // Sample: the drawn id
  float logprob = 0.0f;             // Sample: ln p(token), see logit_task::Sample
  std::vector<std::uint32_t> ids;   // TopK: [k'] ids, k' = k (vocab for k = 0)
  std::vector<float> values;        // TopK: [k'] probabilities; Raw: [vocab] logits; Logprobs: [ids]; Entropy: [1]
};

/// Scratch of logit_step kept between steps, so that a steady decode loop allocates nothing.
template <ExecutionSpace S>
class LogitStepArena {
 public:
  using memory_space = typename S::memory_space;

  /// At least `bytes` of the space's memory; grown geometrically, never shrunk.
  [[nodiscard]] std::byte* device(S const& space, std::size_t bytes) {
    if (device_.size() < bytes) device_ = Buffer<std::byte, memory_space>(std::max(bytes, 2 * device_.size()), memory_of(space));
    return device_.data();
  }
  /// Host staging for the results, [bytes].
  [[nodiscard]] std::span<std::byte> host(std::size_t bytes) {
    if (host_.size() < bytes) host_.resize(bytes);
    return std::span<std::byte>(host_).first(bytes);
  }

 private:
  Buffer<std::byte, memory_space> device_;  // [results bytes | gathered rows bytes]
  std::vector<std::byte> host_;             // [results bytes]
};

namespace detail {

/// Rows of one kernel call, with the call's parameters and where its outputs start in the result arena.
struct LogitCall {
  std::vector<std::size_t> rows;  // plan rows, in plan order
  std::size_t k = 0;              // TopK: outputs per row (k'); Logprobs: the longest id list
  float temperature = 1.0f;
  std::size_t out = 0;            // first output element (4 bytes each) in the result arena
};

template <class Key>
LogitCall& logit_call_for(std::vector<LogitCall>& calls, Key match, std::size_t k, float temperature) {
  for (LogitCall& c : calls) {
    if (match(c)) return c;
  }
  calls.push_back(LogitCall{{}, k, temperature, 0});
  return calls.back();
}

/// Where every output of a step goes: result elements (4 bytes each) and gathered rows (floats).
struct LogitStepLayout {
  LogitCall sample;                          // every Sample row; out: tokens [rows]
  std::vector<LogitCall> sample_logprobs;    // Sample rows by effective temperature; out: ln p(token) [rows]
  std::vector<LogitCall> top_k;              // by (k', temperature); out: ids [rows][k'], then probs [rows][k']
  std::vector<LogitCall> logprobs;           // by temperature; out: [rows][k]
  std::vector<LogitCall> entropy;            // by temperature; out: [rows]
  LogitCall raw;                             // out: [rows][vocab]
  std::size_t result_elements = 0;
};

inline void validate_logit_plan(std::span<LogitRowPlan const> plan, std::size_t vocab) {
  constexpr char const* op = "logit_step";
  auto check_t = [&](std::size_t r, float t) {
    if (!(t > 0.0f) || t == std::numeric_limits<float>::infinity()) {
      fail<InvalidArgument>(op, ": plan[", r, "].temperature = ", t, " must be finite and > 0");
    }
  };
  for (std::size_t r = 0; r < plan.size(); ++r) {
    LogitRowPlan const& p = plan[r];
    bool const raw = std::holds_alternative<logit_task::Raw>(p.task);
    if (p.mask != nullptr && !p.mask->empty() && !raw) {
      if (p.mask->size() != vocab) fail<InvalidArgument>(op, ": plan[", r, "].mask covers ", p.mask->size(), " ids, vocab = ", vocab);
      if (p.mask->allowed_count(vocab) == 0) fail<InvalidArgument>(op, ": plan[", r, "].mask allows no token");
    }
    if (auto const* s = std::get_if<logit_task::Sample>(&p.task)) {
      s->params.validate(op, r);
      std::vector<LogitEdit> edits;  // checks the row's bias ids and recent tokens (inputs[r] is plan[r])
      append_row_edits(op, r, vocab, s->params.penalties, SampleRowInputs{s->recent, s->logit_bias}, edits);
    }
    if (auto const* t = std::get_if<logit_task::TopK>(&p.task)) {
      if (t->k > vocab) fail<InvalidArgument>(op, ": plan[", r, "].k = ", t->k, " > vocab = ", vocab);
      check_t(r, t->temperature);
    }
    if (auto const* l = std::get_if<logit_task::Logprobs>(&p.task)) {
      for (std::size_t j = 0; j < l->ids.size(); ++j) {
        if (l->ids[j] >= vocab) fail<OutOfRange>(op, ": plan[", r, "].ids[", j, "] = ", l->ids[j], " >= vocab = ", vocab);
      }
      check_t(r, l->temperature);
    }
    if (auto const* e = std::get_if<logit_task::Entropy>(&p.task)) check_t(r, e->temperature);
  }
}

inline LogitStepLayout plan_logit_calls(std::span<LogitRowPlan const> plan, std::size_t vocab) {
  LogitStepLayout L;
  for (std::size_t r = 0; r < plan.size(); ++r) {
    std::visit(
        [&](auto const& t) {
          using T = std::decay_t<decltype(t)>;
          if constexpr (std::is_same_v<T, logit_task::Sample>) {
            L.sample.rows.push_back(r);
            float const temp = t.params.effective_temperature();
            logit_call_for(L.sample_logprobs, [&](LogitCall const& c) { return c.temperature == temp; }, 1, temp).rows.push_back(r);
          } else if constexpr (std::is_same_v<T, logit_task::Raw>) {
            L.raw.rows.push_back(r);
          } else if constexpr (std::is_same_v<T, logit_task::TopK>) {
            std::size_t const kk = t.k == 0 ? vocab : t.k;
            auto same = [&](LogitCall const& c) { return c.k == kk && c.temperature == t.temperature; };
            logit_call_for(L.top_k, same, kk, t.temperature).rows.push_back(r);
          } else if constexpr (std::is_same_v<T, logit_task::Logprobs>) {
            auto same = [&](LogitCall const& c) { return c.temperature == t.temperature; };
            LogitCall& call = logit_call_for(L.logprobs, same, 0, t.temperature);
            call.rows.push_back(r);
            call.k = std::max(call.k, t.ids.size());
          } else {
            logit_call_for(L.entropy, [&](LogitCall const& c) { return c.temperature == t.temperature; }, 1, t.temperature).rows.push_back(r);
          }
        },
        plan[r].task);
  }
  std::size_t at = 0;
  L.sample.out = at;
  at += L.sample.rows.size();
  for (LogitCall& c : L.sample_logprobs) {
    c.out = at;
    at += c.rows.size();
  }
  for (LogitCall& c : L.top_k) {
    c.out = at;
    at += 2 * c.rows.size() * c.k;
  }
  for (LogitCall& c : L.logprobs) {
    c.out = at;
    at += c.rows.size() * c.k;
  }
  for (LogitCall& c : L.entropy) {
    c.out = at;
    at += c.rows.size();
  }
  L.raw.out = at;
  at += L.raw.rows.size() * vocab;
  L.result_elements = at;
  return L;
}

/// True when `rows` are consecutive rows of the logits (then a call reads them in place).
inline bool consecutive(std::span<std::size_t const> rows) {
  for (std::size_t i = 1; i < rows.size(); ++i) {
    if (rows[i] != rows[0] + i) return false;
  }
  return true;
}

/// Calls f(first row in `rows`, first logits row, count) for each run of consecutive logits rows.
template <class F>
void for_each_run(std::span<std::size_t const> rows, F f) {
  for (std::size_t i = 0; i < rows.size();) {
    std::size_t n = 1;
    while (i + n < rows.size() && rows[i + n] == rows[i] + n) ++n;
    f(i, rows[i], n);
    i += n;
  }
}

/// One LogitMask per row of a call (copies, empty = allow all), or none when no row of it has a mask.
inline std::vector<LogitMask> call_masks(std::span<LogitRowPlan const> plan, std::span<std::size_t const> rows) {
  bool const any = std::any_of(rows.begin(), rows.end(), [&](std::size_t r) { return plan[r].mask != nullptr && !plan[r].mask->empty(); });
  std::vector<LogitMask> masks;  // [rows] or empty
  if (!any) return masks;
  masks.reserve(rows.size());
  for (std::size_t const r : rows) masks.push_back(plan[r].mask != nullptr ? *plan[r].mask : LogitMask{});
  return masks;
}

}  // namespace detail

/// Runs `plan` ([rows], one entry per logits row) over `logits` ([rows][vocab], the space's memory) and returns
/// each row's result ([rows], host). Throws InvalidArgument / OutOfRange naming plan[r] for a bad entry, before
/// any kernel runs; the arena is scratch, so a failure changes nothing the caller holds.
template <ExecutionSpace S>
[[nodiscard]] std::vector<LogitRowResult> logit_step(S const& space, ShapedView<float const, 2> logits,
                                                     std::span<LogitRowPlan const> plan, LogitStepArena<S>& arena) {
  constexpr char const* op = "logit_step";
  std::size_t const vocab = logits.extent(1);
  detail::check_extent(op, "plan.size() (logits rows)", plan.size(), logits.extent(0));
  if (plan.empty()) return {};
  if (vocab == 0) detail::fail<InvalidArgument>(op, ": logits.extent(1) (vocab) = 0");
  detail::validate_logit_plan(plan, vocab);
  detail::LogitStepLayout const L = detail::plan_logit_calls(plan, vocab);

  // Rows a call cannot read in place (not consecutive in the logits) are gathered after the results.
  auto gathered_rows = [](detail::LogitCall const& c) { return detail::consecutive(c.rows) ? 0 : c.rows.size(); };
  std::size_t gather_rows = gathered_rows(L.sample);
  for (auto const* calls : {&L.sample_logprobs, &L.top_k, &L.logprobs, &L.entropy}) {
    for (detail::LogitCall const& c : *calls) {
      if (calls != &L.sample_logprobs || c.rows.size() != L.sample.rows.size()) gather_rows += gathered_rows(c);
    }
  }
  std::size_t const result_bytes = L.result_elements * 4;
  std::size_t const gather_offset = (result_bytes + 63) / 64 * 64;
  std::byte* const base = arena.device(space, gather_offset + gather_rows * vocab * sizeof(float));
  auto u32_at = [&](std::size_t element) { return reinterpret_cast<std::uint32_t*>(base) + element; };
  auto f32_at = [&](std::size_t element) { return reinterpret_cast<float*>(base) + element; };
  float* gather_next = reinterpret_cast<float*>(base + gather_offset);  // [gather_rows][vocab]

  // The rows of a call as one contiguous [rows][vocab] view: in place, or gathered by runs.
  auto rows_view = [&](std::span<std::size_t const> rows) -> ShapedView<float const, 2> {
    if (detail::consecutive(rows)) return ShapedView<float const, 2>(logits.data() + rows.front() * vocab, rows.size(), vocab);
    float* const dst = gather_next;
    gather_next += rows.size() * vocab;
    detail::for_each_run(rows, [&](std::size_t i, std::size_t row, std::size_t n) {
      copy_in_space(space, std::span<float>(dst + i * vocab, n * vocab), std::span<float const>(logits.data() + row * vocab, n * vocab));
    });
    return ShapedView<float const, 2>(dst, rows.size(), vocab);
  };

  // Sample rows: the tokens, then their log-probabilities at each row's effective temperature.
  std::size_t const ns = L.sample.rows.size();
  std::vector<std::uint32_t> tokens(ns);  // [ns] host copy: probe_logprobs takes its ids on the host
  if (ns > 0) {
    std::vector<SamplingParams> params;  // [ns]
    std::vector<SampleKey> keys;         // [ns]
    std::vector<SampleRowInputs> inputs;  // [ns] or empty: views of the plan's recent tokens and bias lists
    bool any_inputs = false;
    for (std::size_t const r : L.sample.rows) {
      auto const& t = std::get<logit_task::Sample>(plan[r].task);
      params.push_back(t.params);
      keys.push_back(t.key);
      inputs.push_back(SampleRowInputs{t.recent, t.logit_bias});
      any_inputs = any_inputs || !t.logit_bias.empty() || (t.params.penalties.active() && !t.recent.empty());
    }
    if (!any_inputs) inputs.clear();
    auto const view = rows_view(L.sample.rows);
    auto const masks = detail::call_masks(plan, L.sample.rows);
    sample(space, view, params, masks, keys, inputs, std::span<std::uint32_t>(u32_at(L.sample.out), ns));
    copy_to_host(space, std::span<std::uint32_t>(tokens), std::span<std::uint32_t const>(u32_at(L.sample.out), ns));
    std::vector<std::size_t> nth(plan.size());  // [rows] a Sample row's index among the Sample rows
    for (std::size_t i = 0; i < ns; ++i) nth[L.sample.rows[i]] = i;
    for (detail::LogitCall const& c : L.sample_logprobs) {
      bool const all = c.rows.size() == ns;  // the usual case: one temperature for every Sample row
      std::vector<std::uint32_t> ids;        // [rows][1]
      for (std::size_t const r : c.rows) ids.push_back(tokens[nth[r]]);
      probe_logprobs(space, all ? view : rows_view(c.rows), ShapedView<std::uint32_t const, 2>(ids.data(), ids.size(), 1),
                     c.temperature, all ? masks : detail::call_masks(plan, c.rows), ShapedView<float, 2>(f32_at(c.out), ids.size(), 1));
    }
  }
  for (detail::LogitCall const& c : L.top_k) {
    std::size_t const n = c.rows.size();
    probe_distribution(space, rows_view(c.rows), c.k, c.temperature, detail::call_masks(plan, c.rows),
                       ShapedView<std::uint32_t, 2>(u32_at(c.out), n, c.k), ShapedView<float, 2>(f32_at(c.out + n * c.k), n, c.k));
  }
  for (detail::LogitCall const& c : L.logprobs) {
    if (c.k == 0) continue;  // only empty id lists: nothing to compute
    std::vector<std::uint32_t> ids(c.rows.size() * c.k, 0);  // [rows][k], short lists padded with id 0
    for (std::size_t i = 0; i < c.rows.size(); ++i) {
      auto const& want = std::get<logit_task::Logprobs>(plan[c.rows[i]].task).ids;
      std::copy(want.begin(), want.end(), ids.begin() + static_cast<std::ptrdiff_t>(i * c.k));
    }
    probe_logprobs(space, rows_view(c.rows), ShapedView<std::uint32_t const, 2>(ids.data(), c.rows.size(), c.k), c.temperature,
                   detail::call_masks(plan, c.rows), ShapedView<float, 2>(f32_at(c.out), c.rows.size(), c.k));
  }
  for (detail::LogitCall const& c : L.entropy) {
    probe_entropy(space, rows_view(c.rows), c.temperature, detail::call_masks(plan, c.rows),
                  std::span<float>(f32_at(c.out), c.rows.size()));
  }
  detail::for_each_run(L.raw.rows, [&](std::size_t i, std::size_t row, std::size_t n) {
    copy_in_space(space, std::span<float>(f32_at(L.raw.out + i * vocab), n * vocab),
                  std::span<float const>(logits.data() + row * vocab, n * vocab));
  });

  // The one copy of the results; then each row's values, read out with memcpy (the arena is untyped bytes).
  std::span<std::byte> const host = arena.host(result_bytes);
  copy_to_host(space, host, std::span<std::byte const>(base, result_bytes));
  auto read = [&](auto* dst, std::size_t element, std::size_t count) {
    if (count != 0) std::memcpy(dst, host.data() + element * 4, count * 4);
  };
  std::vector<LogitRowResult> results(plan.size());  // [rows]
  for (std::size_t i = 0; i < ns; ++i) results[L.sample.rows[i]].token = tokens[i];
  for (detail::LogitCall const& c : L.sample_logprobs) {
    for (std::size_t i = 0; i < c.rows.size(); ++i) read(&results[c.rows[i]].logprob, c.out + i, 1);
  }
  for (detail::LogitCall const& c : L.top_k) {
    std::size_t const n = c.rows.size();
    for (std::size_t i = 0; i < n; ++i) {
      LogitRowResult& res = results[c.rows[i]];
      res.ids.resize(c.k);
      res.values.resize(c.k);
      read(res.ids.data(), c.out + i * c.k, c.k);
      read(res.values.data(), c.out + n * c.k + i * c.k, c.k);
    }
  }
  for (detail::LogitCall const& c : L.logprobs) {
    for (std::size_t i = 0; i < c.rows.size(); ++i) {
      LogitRowResult& res = results[c.rows[i]];
      res.values.resize(std::get<logit_task::Logprobs>(plan[c.rows[i]].task).ids.size());
      read(res.values.data(), c.out + i * c.k, res.values.size());
    }
  }
  for (detail::LogitCall const& c : L.entropy) {
    for (std::size_t i = 0; i < c.rows.size(); ++i) {
      results[c.rows[i]].values.resize(1);
      read(results[c.rows[i]].values.data(), c.out + i, 1);
    }
  }
  for (std::size_t i = 0; i < L.raw.rows.size(); ++i) {
    LogitRowResult& res = results[L.raw.rows[i]];
    res.values.resize(vocab);
    read(res.values.data(), L.raw.out + i * vocab, vocab);
  }
  return results;
}

/// logit_step with scratch allocated for this call alone.
template <ExecutionSpace S>
[[nodiscard]] std::vector<LogitRowResult> logit_step(S const& space, ShapedView<float const, 2> logits,
                                                     std::span<LogitRowPlan const> plan) {
  LogitStepArena<S> arena;
  return logit_step(space, logits, plan, arena);
}

}  // namespace piecrust
