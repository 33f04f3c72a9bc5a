#pragma once
// Forward: the per-pass builder (Pie's Forward), its typed handles and its output.
//
//   auto fwd = ctx.forward();
//   fwd.input(tokens);                                  // auto positions after the context's tokens
//   auto h = fwd.sample({tokens.size() - 1}, samplers::greedy());
//   auto d = fwd.probe(0, Distribution{1.0f, 32});
//   ForwardOutput out = co_await fwd.execute();
//   std::uint32_t next = out.token(h);
//   float lp = out.sampled_logprobs(h)[0];               // ln p of the sampled token (see sampled_logprobs)
//
// `fwd.adapter(id)` computes every token of this pass (pending tokens it prefills included) with a LoRA
// adapter loaded by Engine::load_adapter; other passes of the same engine step keep their own adapter or none.
//
// Pending tokens (from ctx.fill) are prefilled in the same model step, before the pass's inputs; indices of
// sample/probe/attention_mask refer to the pass's own inputs. `input_pending()` makes the pending tokens the
// first inputs of the pass (indexable), which is how generation loops feed the last sampled token.
// execute() validates everything before anything changes: an invalid pass throws a typed Error from
// `co_await fwd.execute()` and leaves the context exactly as it was.
//
// Automatic positions continue one past the largest position the context holds (PageTable::next_position),
// then run on through the pass: 100 tokens at 0..99 put input({a, b, c}) at 100, 101, 102 (Pie's docs), and
// after explicit gaps, repeats or dropped pages no position is used twice.
// Positions: every position, explicit or automatic, lies in [0, context length) of the model (or below
// 2^32 - 1 when the model states no length), so automatic positions never wrap; OutOfRange otherwise.
// A context runs one pass at a time: executing a second pass of a context whose pass is still queued (two
// programs sharing a context under when_all) throws InvalidState naming the context; the first pass runs.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/core/logit_mask.hpp>
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/context_state.hpp>
#include <piecrust/runtime/probe_spec.hpp>
#include <piecrust/runtime/sampler.hpp>

#include <algorithm>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace piecrust {

class MaskInfo;  // Forward::attention_mask(MaskInfo) converts it with mask_info_pass_rows (runtime/mask_info_rows.hpp)

template <class M>
class Engine;

/// Reads the sampled tokens of one `sample(...)` call.
struct SampleHandle {
  std::uint64_t pass = 0;
  std::size_t index = 0;
};

/// Reads one probe; P is the probe type, so a handle cannot be read as the wrong kind (that does not compile).
template <class P>
struct ProbeHandle {
  std::uint64_t pass = 0;
  std::size_t index = 0;
};

/// The results of one executed pass.
class ForwardOutput {
 public:
  /// The token sampled at the first index of the handle's sample() call.
  [[nodiscard]] std::uint32_t token(SampleHandle h) const { return tokens(h).front(); }
  /// The tokens sampled at every index of the handle's sample() call, in the order given.
  [[nodiscard]] std::span<std::uint32_t const> tokens(SampleHandle h) const { return sample_at(h).tokens; }
  /// ln p of each token of tokens(h), in the same order, under the distribution its sampler drew from before
  /// any cut-off: p = softmax(logits / T) over the ids the pass's logit mask allows (renormalized over them;
  /// every id without a mask), T = the sampler's temperature (1 for greedy and multinomial; a custom sampler's
  /// own, SamplerSpec::custom).
  /// Top-k / top-p / min-p truncation is not renormalized in. With no mask and T = 1 it equals a Logprob probe
  /// of the token at the same index.
  [[nodiscard]] std::span<float const> sampled_logprobs(SampleHandle h) const { return sample_at(h).logprobs; }

  /// Raw logits, [vocab].
  [[nodiscard]] std::span<float const> logits(ProbeHandle<Logits> h) const { return probe_at(h).values; }
  /// (ids, probabilities), descending.
  [[nodiscard]] std::pair<std::span<std::uint32_t const>, std::span<float const>> distribution(
      ProbeHandle<Distribution> h) const {
    auto const& p = probe_at(h);
    return {p.ids, p.values};
  }
  /// log p(id): one value.
  [[nodiscard]] std::span<float const> logprobs(ProbeHandle<Logprob> h) const { return probe_at(h).values; }
  /// log p of each requested id.
  [[nodiscard]] std::span<float const> logprobs(ProbeHandle<Logprobs> h) const { return probe_at(h).values; }
  [[nodiscard]] float entropy(ProbeHandle<Entropy> h) const { return probe_at(h).values.front(); }

  // ---- filled by the engine ----
  struct SampleResult {
    std::vector<std::uint32_t> tokens;
    std::vector<float> logprobs;  // [tokens.size()] see sampled_logprobs
  };
  struct ProbeResult {
    std::vector<std::uint32_t> ids;
    std::vector<float> values;
  };
  std::uint64_t pass = 0;
  std::vector<SampleResult> samples;
  std::vector<ProbeResult> probes;

 private:
  void check_pass(std::uint64_t p, char const* what) const {
    if (p != pass) {
      detail::fail<InvalidArgument>("ForwardOutput: a ", what, " handle of pass ", p, " read on the output of pass ", pass);
    }
  }
  SampleResult const& sample_at(SampleHandle h) const {
    check_pass(h.pass, "sample");
    return samples.at(h.index);
  }
  template <class P>
  ProbeResult const& probe_at(ProbeHandle<P> h) const {
    check_pass(h.pass, "probe");
    return probes.at(h.index);
  }
};

namespace detail {

/// Positions of a pass lie in [0, position_limit(context length)): the model's context length, or 2^32 - 1
/// when it states none (so that the position after the last one still fits in 32 bits).
inline std::uint64_t position_limit(std::size_t context_length) noexcept {
  constexpr std::uint64_t most = std::numeric_limits<std::uint32_t>::max();
  return context_length > 0 ? std::min<std::uint64_t>(context_length, most) : most;
}
inline char const* position_limit_name(std::size_t context_length) noexcept {
  return context_length > 0 ? "the model's context length " : "the position limit ";
}

struct SampleRequest {
  std::vector<std::size_t> indices;  // pass-relative (indexable inputs)
  SamplerSpec sampler;
};

using ProbeKind = std::variant<Logits, Distribution, Logprob, Logprobs, Entropy>;
struct ProbeRequest {
  std::size_t index;
  ProbeKind kind;
};

/// One validated pass, queued on the engine until the next step.
struct PassRequest {
  ContextState* ctx = nullptr;
  std::vector<std::uint32_t> tokens;     // [n] every token the pass appends to the KV cache
  std::vector<std::uint32_t> positions;  // [n] RoPE positions
  std::size_t prefix = 0;                // leading pending tokens that are not indexable
  std::size_t consumed_pending = 0;      // pending tokens the pass consumes when it succeeds
  std::vector<AttentionMask> masks;      // [n - prefix] or empty (causal)
  LogitMask logit_mask;
  std::vector<SampleRequest> samples;
  std::vector<ProbeRequest> probes;
  bool defer_commit = false;
  bool keep_next_logits = false;     // the context keeps the last token's logits row (ContextState::next_logits)
  bool custom_rows = false;          // some attention row differs from the causal one (PageTable::isolate_content)
  std::optional<AdapterId> adapter;  // LoRA adapter of every token of the pass
  std::uint64_t serial = 0;

  std::exception_ptr error;
  ForwardOutput output;
  std::coroutine_handle<> waiter;
};

}  // namespace detail

/// The awaitable returned by Forward::execute().
template <class M>
class ForwardAwaiter {
 public:
  ForwardAwaiter(Engine<M>& engine, detail::PassRequest request)
      : engine_(&engine), request_(std::make_unique<detail::PassRequest>(std::move(request))) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    request_->waiter = h;
    engine_->enqueue(request_.get());
  }
  ForwardOutput await_resume() {
    if (request_->error) std::rethrow_exception(request_->error);
    return std::move(request_->output);
  }

 private:
  Engine<M>* engine_;
  std::unique_ptr<detail::PassRequest> request_;
};

template <class M>
class Forward {
 public:
  Forward(Engine<M>& engine, detail::ContextState& ctx) : engine_(&engine), ctx_(&ctx) {}

  /// Appends tokens at automatic positions (after everything before them).
  Forward& input(std::span<std::uint32_t const> tokens) {
    for (std::uint32_t const t : tokens) inputs_.push_back({t, std::nullopt});
    return *this;
  }
  Forward& input(std::initializer_list<std::uint32_t> tokens) { return input(std::span(tokens.begin(), tokens.size())); }

  /// Appends tokens at explicit positions (repeats, gaps and reordering allowed). Throws OutOfRange (nothing
  /// appended) for a position >= the model's context length.
  Forward& input_at(std::span<std::uint32_t const> tokens, std::span<std::uint32_t const> positions) {
    if (tokens.size() != positions.size()) {
      detail::fail<InvalidArgument>("Forward::input_at: tokens.size() = ", tokens.size(), " != positions.size() = ",
                                    positions.size());
    }
    std::size_t const length = engine_->shape().context_length;
    std::uint64_t const limit = detail::position_limit(length);
    for (std::size_t i = 0; i < positions.size(); ++i) {
      if (positions[i] >= limit) {
        detail::fail<OutOfRange>("Forward::input_at: positions[", i, "] = ", positions[i], " >= ",
                                 detail::position_limit_name(length), limit);
      }
    }
    for (std::size_t i = 0; i < tokens.size(); ++i) inputs_.push_back({tokens[i], positions[i]});
    return *this;
  }

  /// Makes the context's pending tokens this pass's first inputs, so they can be sampled and probed.
  Forward& input_pending() {
    if (!inputs_.empty()) detail::fail<InvalidState>("Forward::input_pending: call it before input()/input_at()");
    pending_indexable_ = true;
    return *this;
  }

  /// One attention row per indexable input (0 = attend, 1 = masked), over the context's KV slots.
  Forward& attention_mask(std::vector<AttentionMask> rows) {
    masks_ = std::move(rows);
    has_masks_ = true;
    return *this;
  }

  /// The rows of an ejKernel MaskInfo's (batch, head): its queries are the inputs added so far (call it after
  /// them), its KV axis the context's KV slots, this pass's tokens last; see <piecrust/runtime/mask_info_rows.hpp>,
  /// which must be included to call it (the conversion lives there; forward.hpp stays light). Throws
  /// InvalidArgument (the Forward unchanged) for a size mismatch or a row that attends a future token.
  /// A template so that MaskInfo need only be declared here and the conversion is looked up where it is used.
  template <std::same_as<MaskInfo> Mask>
  Forward& attention_mask(Mask const& m, std::int64_t batch = 0, std::int64_t head = 0) {
    std::size_t const pending = ctx_->pending.size();
    std::size_t const kv_before = ctx_->table.seq_len() + (pending_indexable_ ? 0 : pending);
    std::size_t const inputs = inputs_.size() + (pending_indexable_ ? pending : 0);
    return attention_mask(mask_info_pass_rows(m, kv_before, inputs, batch, head));  // found by ADL on MaskInfo
  }

  /// Restricts every sampler of this pass (1 = allowed; empty = all).
  Forward& mask(LogitMask m) {
    logit_mask_ = std::move(m);
    return *this;
  }

  /// Samples a token at each of `indices` (indexable inputs) with `sampler`.
  SampleHandle sample(std::vector<std::size_t> indices, SamplerSpec sampler = {}) {
    samples_.push_back({std::move(indices), std::move(sampler)});
    return {serial_, samples_.size() - 1};
  }

  /// Reads a probe at indexable input `index`.
  template <class P>
    requires std::is_constructible_v<detail::ProbeKind, P>
  ProbeHandle<P> probe(std::size_t index, P probe_kind) {
    probes_.push_back({index, detail::ProbeKind(std::move(probe_kind))});
    return {serial_, probes_.size() - 1};
  }

  /// Keeps the new K/V in working pages (for speculation: the caller rolls back or commits).
  Forward& defer_commit(bool on = true) {
    defer_commit_ = on;
    return *this;
  }

  /// Keeps the logits of the pass's last token (one vocabulary row, in the model's memory space) in the
  /// context, so that a context with nothing pending can still continue: generate's first token and
  /// decode_step_dist read them, and forks share them. Context::flush does this; the next pass of the context
  /// drops them.
  Forward& keep_next_logits(bool on = true) {
    keep_next_logits_ = on;
    return *this;
  }

  /// Computes this pass (its inputs and the pending tokens it prefills) with the LoRA adapter `id`, loaded by
  /// Engine::load_adapter, or with none (std::nullopt; the default unless Context::set_adapter chose one).
  /// Throws InvalidArgument (the pass unchanged) when no adapter `id` is loaded in this engine. The K/V the
  /// pass writes stays in the context: later passes attend to it, adapter or not.
  Forward& adapter(std::optional<AdapterId> id) {
    if (id && !engine_->has_adapter(*id)) {
      detail::fail<InvalidArgument>("Forward::adapter: adapter id ", id->value, " is not loaded in this engine");
    }
    adapter_ = id;
    return *this;
  }

  /// Validates the pass and hands it to the engine. `co_await` the result to get the ForwardOutput.
  /// Throws InvalidArgument / OutOfRange / InvalidState (context unchanged) for an invalid pass, and
  /// InvalidState when the context already has a pass in flight.
  ForwardAwaiter<M> execute() {
    if (executed_) detail::fail<InvalidState>("Forward::execute: this pass was already executed");
    detail::PassRequest r = build();
    executed_ = true;
    return ForwardAwaiter<M>(*engine_, std::move(r));
  }

  /// The serial number that this pass's handles carry.
  [[nodiscard]] std::uint64_t serial() const noexcept { return serial_; }

 private:
  struct Input {
    std::uint32_t token;
    std::optional<std::uint32_t> position;
  };

  detail::PassRequest build() const {
    constexpr char const* op = "Forward::execute";
    std::size_t const vocab = engine_->shape().vocab_size;
    detail::ContextState const& cs = *ctx_;
    if (cs.pass_in_flight != 0) {
      detail::fail<InvalidState>(op, ": context ", cs.id, " already has pass ", cs.pass_in_flight,
                                 " in flight (a context runs one pass at a time: await it first)");
    }
    detail::PassRequest r;
    r.ctx = ctx_;
    r.serial = serial_;
    r.defer_commit = defer_commit_;
    r.keep_next_logits = keep_next_logits_;
    if (adapter_ && !engine_->has_adapter(*adapter_)) {
      detail::fail<InvalidArgument>(op, ": adapter id ", adapter_->value, " is no longer loaded");
    }
    r.adapter = adapter_;
    r.consumed_pending = cs.pending.size();
    r.prefix = pending_indexable_ ? 0 : cs.pending.size();

    // Positions are checked against the limit before they are narrowed, so none wraps.
    std::size_t const length = engine_->shape().context_length;
    std::uint64_t const limit = detail::position_limit(length);
    std::int64_t last = static_cast<std::int64_t>(cs.table.next_position()) - 1;
    for (std::size_t j = 0; j < cs.pending.size(); ++j) {
      if (static_cast<std::uint64_t>(++last) >= limit) {
        detail::fail<OutOfRange>(op, ": pending token ", j, " would get position ", last, " >= ",
                                 detail::position_limit_name(length), limit);
      }
      r.tokens.push_back(cs.pending[j]);
      r.positions.push_back(static_cast<std::uint32_t>(last));
    }
    for (std::size_t k = 0; k < inputs_.size(); ++k) {
      Input const& in = inputs_[k];
      std::int64_t const pos = in.position ? std::int64_t{*in.position} : last + 1;
      if (static_cast<std::uint64_t>(pos) >= limit) {
        detail::fail<OutOfRange>(op, ": input ", k, in.position ? " has position " : " would get position ", pos, " >= ",
                                 detail::position_limit_name(length), limit);
      }
      last = std::max(last, pos);
      r.tokens.push_back(in.token);
      r.positions.push_back(static_cast<std::uint32_t>(pos));
    }
    std::size_t const n = r.tokens.size();
    std::size_t const indexable = n - r.prefix;
    if (n == 0) detail::fail<InvalidArgument>(op, ": empty pass (no pending tokens and no inputs)");
    for (std::size_t i = 0; i < n; ++i) {
      if (r.tokens[i] >= vocab) {
        detail::fail<OutOfRange>(op, ": token id ", r.tokens[i], " at input ", static_cast<std::int64_t>(i) - static_cast<std::int64_t>(r.prefix),
                                 " >= vocab = ", vocab);
      }
    }
    std::size_t const kv_after = cs.table.seq_len() + n;
    if (kv_after > engine_->shape().context_length && engine_->shape().context_length > 0) {
      detail::fail<OutOfRange>(op, ": the context would hold ", kv_after, " tokens > the model's context length ",
                               engine_->shape().context_length);
    }
    if (has_masks_) {
      if (masks_.size() != indexable) {
        detail::fail<InvalidArgument>(op, ": attention_mask has ", masks_.size(), " rows for ", indexable, " inputs");
      }
      for (std::size_t i = 0; i < masks_.size(); ++i) {
        if (masks_[i].size() > kv_after) {
          detail::fail<InvalidArgument>(op, ": attention_mask row ", i, " has length ", masks_[i].size(),
                                        " > KV length after the pass ", kv_after);
        }
      }
      r.masks = masks_;
      // Rows other than causal give K/V that a plain computation of these tokens would not reproduce: the
      // pages it lands in must not be found by content from other contexts (Engine isolates them).
      std::size_t const first_slot = cs.table.seq_len() + r.prefix;
      for (std::size_t i = 0; i < masks_.size() && !r.custom_rows; ++i) {
        r.custom_rows = !(masks_[i] == AttentionMask::causal(first_slot + i + 1));
      }
    }
    if (!logit_mask_.empty()) {
      if (logit_mask_.size() != vocab) {
        detail::fail<InvalidArgument>(op, ": logit mask covers ", logit_mask_.size(), " ids, vocab = ", vocab);
      }
      if (logit_mask_.allowed_count(vocab) == 0 && !samples_.empty()) {
        detail::fail<InvalidArgument>(op, ": the logit mask allows no token");
      }
    }
    r.logit_mask = logit_mask_;
    for (std::size_t s = 0; s < samples_.size(); ++s) {
      auto const& req = samples_[s];
      if (req.indices.empty()) detail::fail<InvalidArgument>(op, ": sample #", s, " has no index");
      for (std::size_t const i : req.indices) {
        if (i >= indexable) detail::fail<OutOfRange>(op, ": sample index ", i, " >= number of inputs ", indexable);
      }
      if (!req.sampler.is_custom()) req.sampler.params().validate(op, s);
    }
    for (auto const& p : probes_) {
      if (p.index >= indexable) detail::fail<OutOfRange>(op, ": probe index ", p.index, " >= number of inputs ", indexable);
      if (auto const* d = std::get_if<Distribution>(&p.kind)) {
        if (d->k > vocab) detail::fail<InvalidArgument>(op, ": Distribution k = ", d->k, " > vocab = ", vocab);
        if (!(d->temperature > 0.0f)) detail::fail<InvalidArgument>(op, ": Distribution temperature = ", d->temperature);
      }
      if (auto const* e = std::get_if<Entropy>(&p.kind); e && !(e->temperature > 0.0f)) {
        detail::fail<InvalidArgument>(op, ": Entropy temperature = ", e->temperature);
      }
      if (auto const* l = std::get_if<Logprob>(&p.kind); l && l->id >= vocab) {
        detail::fail<OutOfRange>(op, ": Logprob id ", l->id, " >= vocab = ", vocab);
      }
      if (auto const* l = std::get_if<Logprobs>(&p.kind)) {
        for (std::uint32_t const id : l->ids) {
          if (id >= vocab) detail::fail<OutOfRange>(op, ": Logprobs id ", id, " >= vocab = ", vocab);
        }
      }
    }
    r.samples = samples_;
    r.probes = probes_;
    return r;
  }

  Engine<M>* engine_;
  detail::ContextState* ctx_;
  std::uint64_t serial_ = detail::next_pass_serial();
  std::vector<Input> inputs_;
  bool pending_indexable_ = false;
  std::vector<AttentionMask> masks_;
  bool has_masks_ = false;
  LogitMask logit_mask_;
  std::vector<detail::SampleRequest> samples_;
  std::vector<detail::ProbeRequest> probes_;
  bool defer_commit_ = false;
  bool keep_next_logits_ = false;
  std::optional<AdapterId> adapter_;
  bool executed_ = false;
};

}  // namespace piecrust
