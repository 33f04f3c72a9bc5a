#pragma once
// Context: a token buffer plus a paged KV cache (Pie's Context), owned by one program.
//
//   auto ctx = engine.create_context();
//   ctx.fill_system("You are terse.");
//   ctx.fill_user("Name a color.");
//   Generation g = co_await ctx.generate(samplers::greedy(), max_len(32) || ends_with_any(eos));
//   Context branch = ctx.fork();          // copy-on-write: committed pages are shared
//
// `fill*` only appends to the pending buffer; nothing is computed until a pass runs (flush, generate, or a
// Forward). The last token a generation samples stays pending (it is not in the KV cache yet), exactly as
// the next pass would feed it. `token_ids()` lists the KV tokens followed by the pending ones.

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_table.hpp>
#include <piecrust/runtime/constraint.hpp>
#include <piecrust/runtime/context_state.hpp>
#include <piecrust/runtime/drafter.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/stop_condition.hpp>
#include <piecrust/runtime/store.hpp>
#include <piecrust/runtime/task.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust {

template <class M>
class Engine;

/// What Context::flush leaves pending: nothing, or the last token (to continue generating from it).
enum class Flush { all, keep_last };

/// What a generation produced. The token that triggered the stop condition is included (Pie's behaviour).
struct Generation {
  std::vector<std::uint32_t> tokens;
  std::string text;  // the tokens decoded, special tokens left out (empty without a tokenizer)
  std::size_t passes = 0;  // forward passes the generation took (speculation makes this < tokens.size())
  /// [tokens.size()] ln p(tokens[i]) under the distribution the sampler drew tokens[i] from, before any
  /// cut-off: softmax(logits / T) over the ids the constraints allow (renormalized over them; every id without
  /// constraints), T = the sampler's temperature (1 for greedy, multinomial and custom samplers; speculative
  /// generation is greedy). Top-k / top-p / min-p truncation is not renormalized in. Natural log, <= 0.
  std::vector<float> logprobs;
};

/// Low-level page operations of a context (Pie's ctx.inner()). Each validates before it changes anything.
template <class M>
class RawContext {
 public:
  explicit RawContext(detail::ContextState& s) : s_(&s) {}
  void reserve_working_pages(std::size_t n) { s_->table.reserve_working_pages(n); }
  /// Commits the first k working pages (see PageTable::commit_working_pages). Throws InvalidState (nothing
  /// committed) for pages that are not full or hold positions not above the committed ones.
  std::vector<PageId> commit_working_pages(std::size_t k) { return s_->table.commit_working_pages(k); }
  /// Commits every full working page at once (say, after passes run with defer_commit) and returns their
  /// physical ids, in order; none when no working page is full. Throws InvalidState, nothing committed, in the
  /// cases commit_working_pages does.
  std::vector<PageId> commit_full_working_pages() {
    std::size_t const k = s_->table.working_token_count() / s_->table.page_size();
    if (k == 0) return {};
    return s_->table.commit_working_pages(k);
  }
  void release_working_pages(std::size_t n) { s_->table.release_working_pages(n); }
  void truncate_working_page_tokens(std::size_t n) { s_->table.truncate_working_page_tokens(n); }
  [[nodiscard]] PageTable const& page_table() const { return s_->table; }

 private:
  detail::ContextState* s_;
};

template <class M>
class Context {
 public:
  Context(Engine<M>& engine, std::unique_ptr<detail::ContextState> state) : engine_(&engine), s_(std::move(state)) {}

  // ---- filling (nothing is computed) ----

  /// Appends token ids to the pending buffer. Throws OutOfRange (nothing appended) for an id >= vocab.
  void fill(std::span<std::uint32_t const> tokens) {
    std::size_t const vocab = engine_->shape().vocab_size;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] >= vocab) detail::fail<OutOfRange>("Context::fill: tokens[", i, "] = ", tokens[i], " >= vocab = ", vocab);
    }
    s_->pending.insert(s_->pending.end(), tokens.begin(), tokens.end());
  }
  void fill(std::initializer_list<std::uint32_t> tokens) { fill(std::span(tokens.begin(), tokens.size())); }

  /// Appends text, tokenized with the engine's tokenizer (special-token markers in the text are parsed).
  void fill(std::string_view text) { fill(engine_->encode(text)); }

  /// Chat turns in the model's template. fill_user leaves the user turn open: the next generate() first
  /// opens the assistant's turn.
  void fill_system(std::string_view text) { fill_message("system", text); }
  void fill_user(std::string_view text) {
    fill_message("user", text);
    s_->user_turn_open = true;
  }
  void fill_assistant(std::string_view text) { fill_message("assistant", text); }
  /// Opens the assistant's turn now (generate() does it by itself after fill_user).
  void fill_generation_prompt() {
    fill(engine_->encode(engine_->chat_template().generation_prompt()));
    s_->user_turn_open = false;
  }

  // ---- passes ----

  /// A pass builder; it starts with the context's adapter (set_adapter), if any.
  [[nodiscard]] Forward<M> forward() {
    Forward<M> f(*engine_, *s_);
    if (s_->adapter) f.adapter(*s_->adapter);  // InvalidArgument if it was unloaded since
    return f;
  }

  /// Runs the passes this context builds from now on (flush, generate, generate_with_drafter, decode_step_dist
  /// and every forward() builder) with the LoRA adapter `id` loaded by Engine::load_adapter, or with none
  /// (std::nullopt). Forks inherit it. Throws InvalidArgument (nothing changed) when `id` is not loaded.
  void set_adapter(std::optional<AdapterId> id) {
    if (id && !engine_->has_adapter(*id)) {
      detail::fail<InvalidArgument>("Context::set_adapter: adapter id ", id->value, " is not loaded in this engine");
    }
    s_->adapter = id;
  }
  [[nodiscard]] std::optional<AdapterId> adapter() const { return s_->adapter; }

  /// Prefills the pending tokens and commits full pages. With Flush::keep_last the last pending token stays
  /// pending, so that generate() (or every fork of this context) can continue from it: the way to share one
  /// prefilled prompt between branches.
  Task<void> flush(Flush mode = Flush::all) {
    if (s_->pending.empty() || (mode == Flush::keep_last && s_->pending.size() == 1)) co_return;
    std::optional<std::uint32_t> kept;
    if (mode == Flush::keep_last) {
      kept = s_->pending.back();
      s_->pending.pop_back();
    }
    std::exception_ptr error;
    try {
      auto fwd = forward();
      co_await fwd.execute();
    } catch (...) {
      error = std::current_exception();
    }
    if (kept) s_->pending.push_back(*kept);
    if (error) std::rethrow_exception(error);
  }

  /// The next-token distribution after the pending tokens (prefilling them): ids and probabilities.
  Task<std::pair<std::vector<std::uint32_t>, std::vector<float>>> decode_step_dist(float temperature = 1.0f,
                                                                                   std::size_t k = 0) {
    if (s_->pending.empty()) detail::fail<InvalidState>("Context::decode_step_dist: no pending token to continue from");
    auto fwd = forward();
    fwd.input_pending();
    auto const h = fwd.probe(s_->pending.size() - 1, Distribution{temperature, k});
    ForwardOutput out = co_await fwd.execute();
    auto [ids, probs] = out.distribution(h);
    co_return std::pair{std::vector<std::uint32_t>(ids.begin(), ids.end()), std::vector<float>(probs.begin(), probs.end())};
  }

  /// Generates until `stop` fires (or the model's context is full), sampling with `sampler` under every
  /// constraint's mask. Throws InvalidState when there is nothing to continue from.
  template <Constraint... Cs>
  Task<Generation> generate(SamplerSpec sampler, StopCondition stop, Cs&... constraints) {
    open_assistant_turn();
    if (s_->pending.empty()) detail::fail<InvalidState>("Context::generate: the context is empty: fill it first");
    Generation g;
    for (;;) {
      auto fwd = forward();
      fwd.input_pending();
      if constexpr (sizeof...(Cs) > 0) fwd.mask(combined_mask(constraints...));
      auto const h = fwd.sample({s_->pending.size() - 1}, sampler);
      ForwardOutput out = co_await fwd.execute();
      ++g.passes;
      std::uint32_t const t = out.token(h);
      (constraints.advance(t), ...);
      g.tokens.push_back(t);
      g.logprobs.push_back(out.sampled_logprobs(h).front());
      s_->pending.push_back(t);
      if (stop.should_stop(g.tokens) || context_full()) break;
    }
    g.text = engine_->decode_text(g.tokens);
    co_return g;
  }

  /// Greedy generation with speculative drafts: every draft (chain or tree) is verified in one pass, the
  /// longest agreeing path is kept and the rest rolled back. The tokens equal plain greedy generation's as
  /// long as the model computes a row identically in a batch of 1 + max_draft rows and in a batch of one
  /// (true of the host backend for quantized weights at any batch size, where each output is its row's own
  /// integer dot product; with f32 weights OpenBLAS's sgemm is row-invariant only up to 12 rows).
  template <Drafter D>
  Task<Generation> generate_with_drafter(D& drafter, StopCondition stop, std::size_t max_draft = 8) {
    open_assistant_turn();
    if (s_->pending.empty()) detail::fail<InvalidState>("Context::generate_with_drafter: the context is empty");
    {
      auto const all = token_ids();
      drafter.update(all);
    }
    Generation g;
    std::uint32_t const ps = page_size();
    for (;;) {
      // A prompt is prefilled in a pass of its own, exactly as plain generation does, so every row is computed
      // in the same batch shape as there: the host GEMM gives bit-identical rows only for equal shapes (and
      // for small batches), so verification passes stay at most 1 + max_draft tokens.
      Draft draft = s_->pending.size() > 1 ? Draft{} : drafter.draft();
      draft.validate();
      std::size_t const room = engine_->shape().context_length - std::min(engine_->shape().context_length, seq_len() + 1);
      std::size_t const keep = std::min({draft.size(), max_draft, room});
      draft.tokens.resize(keep);
      draft.parents.resize(keep);

      std::size_t const np = s_->pending.size();
      std::size_t const kv_before = s_->table.seq_len();
      std::uint32_t const last_pos = s_->table.next_position() + static_cast<std::uint32_t>(np) - 1;
      auto fwd = forward();
      fwd.input_pending();
      std::vector<std::uint32_t> positions(keep);
      for (std::size_t i = 0; i < keep; ++i) positions[i] = last_pos + static_cast<std::uint32_t>(draft.depth(i));
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
        if (stop.should_stop(g.tokens) || context_full_after(used)) {
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
      s_->table.truncate_working_page_tokens(keep - accepted_in_kv);
      std::size_t const full = s_->table.working_token_count() / ps;
      if (full > 0) try_commit(full);
      if (!contiguous) {
        for (std::size_t k = 0; k + 1 < used; ++k) s_->pending.push_back(emitted[k]);
      }
      s_->pending.push_back(emitted[used - 1]);
      drafter.update(std::span(emitted).first(used));
      if (stopped) break;
    }
    g.text = engine_->decode_text(g.tokens);
    co_return g;
  }

  /// A copy-on-write branch: committed pages are shared, working pages copied, pending tokens carried.
  /// The branch gets its own random stream. Throws OutOfPages (nothing changed) when the copies do not fit.
  [[nodiscard]] Context fork() const { return engine_->fork_context(*s_); }

  // ---- reading ----

  /// KV tokens then pending tokens.
  [[nodiscard]] std::vector<std::uint32_t> token_ids() const {
    std::vector<std::uint32_t> ids;
    for (TokenMeta const& t : s_->table.tokens()) ids.push_back(t.token);
    ids.insert(ids.end(), s_->pending.begin(), s_->pending.end());
    return ids;
  }
  [[nodiscard]] std::span<std::uint32_t const> pending_tokens() const { return s_->pending; }
  /// KV slots held (tokens already computed; pending tokens are not counted).
  [[nodiscard]] std::size_t seq_len() const { return s_->table.seq_len(); }
  [[nodiscard]] std::uint32_t page_size() const { return s_->table.page_size(); }
  [[nodiscard]] PageTable const& page_table() const { return s_->table; }
  [[nodiscard]] std::uint64_t id() const { return s_->id; }

  // ---- memory ----

  /// Marks KV slots [begin, end) masked: later passes that give no attention rows of their own do not attend
  /// to them (and pages that are wholly masked are left out of attention by page-trim).
  /// Throws OutOfRange (nothing changed) unless [begin, end) lies inside [0, seq_len()).
  void mask_token_range(std::size_t begin, std::size_t end, bool masked = true) {
    s_->table.mask_token_range(begin, end, masked);
    s_->masked.truncate(s_->table.seq_len());
    s_->masked.assign(begin, end, masked);
  }
  /// Frees full committed pages whose slots are all masked; returns how many. Later slots move down by a page
  /// each (positions unchanged).
  std::size_t drop_masked_kv_pages() {
    PageTable& t = s_->table;
    s_->masked.truncate(t.seq_len());
    auto const firsts = s_->masked.masked_blocks(t.page_size(), t.committed_pages().size());
    std::size_t const dropped = t.drop_masked_kv_pages();
    if (dropped == firsts.size()) {
      s_->masked.erase_blocks(firsts, t.page_size());
    } else {
      s_->masked = MaskedSlots::from_tokens(t.tokens());  // out of step with the flags (not expected): rebuild
    }
    return dropped;
  }

  [[nodiscard]] RawContext<M> inner() { return RawContext<M>(*s_); }

  // ---- export / import ----

  /// Stores the committed pages (K/V bytes and token metadata) under `name`. Working and pending tokens are
  /// not exported. Throws InvalidState (nothing stored) when a committed page holds K/V computed under a LoRA
  /// adapter: the format does not record adapters.
  void export_kv_pages(Store& store, std::string const& name) const { store.set(name, engine_->export_pages(*s_)); }

  /// A context holding the pages exported under `name`, with no prefill. Throws InvalidArgument if there is no
  /// such entry or it was made by another model or page size, FormatError if it is corrupt.
  static Context from_imported(Engine<M>& engine, Store& store, std::string const& name) {
    auto blob = store.get(name);
    if (!blob) detail::fail<InvalidArgument>("Context::from_imported: no entry named \"", name, "\" in the store");
    return engine.import_pages(*blob);
  }

  [[nodiscard]] detail::ContextState& state() { return *s_; }
  [[nodiscard]] detail::ContextState const& state() const { return *s_; }

 private:
  void fill_message(std::string_view role, std::string_view text) {
    std::string chunk;
    if (!s_->conversation_started) chunk = engine_->chat_template().begin();
    chunk += engine_->chat_template().message(role, text);
    fill(engine_->encode(chunk));  // throws before anything changes
    s_->conversation_started = true;
    s_->user_turn_open = false;
  }

  void open_assistant_turn() {
    if (s_->user_turn_open) fill_generation_prompt();
  }

  bool context_full() const { return context_full_after(0); }
  bool context_full_after(std::size_t extra) const {
    std::size_t const limit = engine_->shape().context_length;
    return limit > 0 && s_->table.seq_len() + s_->pending.size() + extra >= limit;
  }

  void try_commit(std::size_t k) {
    try {
      s_->table.commit_working_pages(k);
    } catch (InvalidState const&) {
      // Repeated or reordered positions: the pages stay working (nothing changed).
    }
  }

  Engine<M>* engine_;
  std::unique_ptr<detail::ContextState> s_;
};

}  // namespace piecrust
