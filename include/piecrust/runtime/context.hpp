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
// A full flush() leaves nothing pending and keeps the next-token logits of its last token instead (one
// vocabulary row in the model's memory space, shared by forks), so generate() and decode_step_dist()
// continue from a flushed context as Pie's lifecycle does: fill, flush, generate.
// A context belongs to its engine's thread (Engine::check_thread): the calls that reach the engine, and
// those that change pages, check it.

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_table.hpp>
#include <piecrust/runtime/constraint.hpp>
#include <piecrust/runtime/context_state.hpp>
#include <piecrust/runtime/drafter.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/generation.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/kv_trust.hpp>
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

/// What Context::flush leaves pending: nothing (the context keeps the last token's next-token logits to continue
/// from), or the last token itself (computed by the next pass).
enum class Flush { all, keep_last };

/// Low-level page operations of a context (Pie's ctx.inner()). Each validates before it changes anything.
template <class M>
class RawContext {
 public:
  explicit RawContext(detail::ContextState& s) : s_(&s) {}
  void reserve_working_pages(std::size_t n) { s_->table.reserve_working_pages(n); }
  /// Commits the first k working pages (see PageTable::commit_working_pages). Throws InvalidState (nothing
  /// committed) for pages that are not full or hold positions not above the committed ones.
  std::vector<PageId> commit_working_pages(std::size_t k) { return s_->table.commit_working_pages(k); }
  /// Pages committed from now on are shared by content only with this context's later forks: call it before
  /// passes whose custom attention masks make K/V that a plain pass over the same tokens would not.
  void isolate_content() { s_->table.isolate_content(); }
  /// Commits every full working page at once (say, after passes run with defer_commit) and returns their
  /// physical ids, in order; none when no working page is full. Throws InvalidState, nothing committed, in the
  /// cases commit_working_pages does.
  std::vector<PageId> commit_full_working_pages() {
    std::size_t const k = s_->table.working_token_count() / s_->table.page_size();
    if (k == 0) return {};
    return s_->table.commit_working_pages(k);
  }
  /// Frees the last n working pages: the newest tokens, not the oldest (evicting old tokens is
  /// Context::mask_token_range + drop_masked_kv_pages). Drops the kept next-token logits if tokens go.
  void release_working_pages(std::size_t n) {
    std::size_t const before = s_->table.seq_len();
    s_->table.release_working_pages(n);
    if (s_->table.seq_len() != before) s_->next_logits.reset();
  }
  /// Forgets the last n working tokens (rollback); drops the kept next-token logits when n > 0.
  void truncate_working_page_tokens(std::size_t n) {
    s_->table.truncate_working_page_tokens(n);
    if (n > 0) s_->next_logits.reset();
  }
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
    if (!tokens.empty()) s_->next_logits.reset();  // the pending tokens are what comes next now
  }
  void fill(std::initializer_list<std::uint32_t> tokens) { fill(std::span(tokens.begin(), tokens.size())); }

  /// Appends text, tokenized with the engine's tokenizer as plain text: control-token markers written in it
  /// ("<|im_end|>") stay ordinary text.
  void fill(std::string_view text) { fill(engine_->encode(text)); }
  /// Appends text whose control-token markers are parsed ("<|im_start|>" becomes that token). Only for text
  /// the program wrote itself: never pass user input here.
  void fill_with_special_tokens(std::string_view text) { fill(engine_->encode_with_special_tokens(text)); }

  /// Chat turns in the model's template. fill_user leaves the user turn open: the next generate() first
  /// opens the assistant's turn. Only the template's markup becomes control tokens: the text never does.
  void fill_system(std::string_view text) { fill_message("system", text); }
  void fill_user(std::string_view text) {
    fill_message("user", text);
    s_->user_turn_open = true;
  }
  void fill_assistant(std::string_view text) { fill_message("assistant", text); }
  /// Opens the assistant's turn now (generate() does it by itself after fill_user).
  void fill_generation_prompt() {
    fill(engine_->encode_with_special_tokens(engine_->chat_template().generation_prompt_markup()));
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

  /// Prefills the pending tokens and commits full pages. Flush::all (Pie's flush) keeps the next-token logits
  /// of the last token, so generate(), decode_step_dist() and every fork continue from them with nothing
  /// pending. With Flush::keep_last the last pending token stays pending instead (and is computed by the next
  /// pass). Nothing pending: nothing happens.
  Task<void> flush(Flush mode = Flush::all) {
    if (s_->pending.empty() || (mode == Flush::keep_last && s_->pending.size() == 1)) co_return;
    if (mode == Flush::all) {
      auto fwd = forward();
      fwd.input_pending().keep_next_logits();
      co_await fwd.execute();
      co_return;
    }
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

  /// The next-token distribution after the pending tokens (prefilling them and keeping their next-token
  /// logits, as a flush does), or, with nothing pending, from the kept logits: ids and probabilities,
  /// descending (k = 0: the whole vocabulary). Throws InvalidState when there is neither.
  Task<std::pair<std::vector<std::uint32_t>, std::vector<float>>> decode_step_dist(float temperature = 1.0f,
                                                                                   std::size_t k = 0) {
    if (s_->pending.empty()) co_return engine_->next_logits_distribution(*s_, Distribution{temperature, k});
    auto fwd = forward();
    fwd.input_pending().keep_next_logits();  // so that generate() (or this call again) continues from here
    auto const h = fwd.probe(s_->pending.size() - 1, Distribution{temperature, k});
    ForwardOutput out = co_await fwd.execute();
    auto [ids, probs] = out.distribution(h);
    co_return std::pair{std::vector<std::uint32_t>(ids.begin(), ids.end()), std::vector<float>(probs.begin(), probs.end())};
  }

  /// Generates until `stop` fires (or the model's context is full), sampling with `sampler` under every
  /// constraint's mask. Throws InvalidState when there is nothing to continue from. (generation.hpp)
  template <Constraint... Cs>
  Task<Generation> generate(SamplerSpec sampler, StopCondition stop, Cs&... constraints) {
    return detail::generate(*this, std::move(sampler), std::move(stop), constraints...);
  }

  /// Greedy generation with speculative drafts, every draft verified in one pass (generation.hpp).
  template <Drafter D>
  Task<Generation> generate_with_drafter(D& drafter, StopCondition stop, std::size_t max_draft = 8) {
    return detail::generate_with_drafter(*this, drafter, std::move(stop), max_draft);
  }

  /// A copy-on-write branch: committed pages are shared, working pages copied, pending tokens and the kept
  /// next-token logits carried (the logits shared: nobody writes them).
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
  [[nodiscard]] Engine<M>& engine() const { return *engine_; }

  // ---- memory ----

  /// Marks KV slots [begin, end) masked: later passes that give no attention rows of their own do not attend
  /// to them (and pages that are wholly masked are left out of attention by page-trim).
  /// Throws OutOfRange (nothing changed) unless [begin, end) lies inside [0, seq_len()).
  void mask_token_range(std::size_t begin, std::size_t end, bool masked = true) {
    engine_->check_thread("Context::mask_token_range");
    s_->table.mask_token_range(begin, end, masked);
    s_->masked.truncate(s_->table.seq_len());
    s_->masked.assign(begin, end, masked);
  }
  /// Frees full committed pages whose slots are all masked; returns how many. Later slots move down by a page
  /// each (positions unchanged).
  std::size_t drop_masked_kv_pages() {
    engine_->check_thread("Context::drop_masked_kv_pages");
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

  [[nodiscard]] RawContext<M> inner() {
    engine_->check_thread("Context::inner");
    return RawContext<M>(*s_);
  }

  // ---- export / import ----

  /// Stores the committed pages (K/V bytes and token metadata) under `name`. Working and pending tokens are
  /// not exported. Throws InvalidState (nothing stored) when a committed page holds K/V computed under a LoRA
  /// adapter: the format does not record adapters.
  void export_kv_pages(Store& store, std::string const& name) const { store.set(name, engine_->export_pages(*s_)); }

  /// A context holding the pages exported under `name`, with no prefill. Throws InvalidArgument if there is no
  /// such entry or it was made by another model (identity or EngineOptions::model_id) or layout, FormatError
  /// if it is corrupt, OutOfRange for a token id beyond the vocabulary or a position beyond the context
  /// length, OutOfPages; nothing changes then. The pages stay private to this context and its forks unless
  /// `trust` is KvTrust::trusted (kv_trust.hpp).
  static Context from_imported(Engine<M>& engine, Store& store, std::string const& name,
                               KvTrust trust = KvTrust::untrusted) {
    auto blob = store.get(name);
    if (!blob) detail::fail<InvalidArgument>("Context::from_imported: no entry named \"", name, "\" in the store");
    return engine.import_pages(*blob, trust);
  }

  [[nodiscard]] detail::ContextState& state() { return *s_; }
  [[nodiscard]] detail::ContextState const& state() const { return *s_; }

 private:
  void fill_message(std::string_view role, std::string_view text) {
    fill(engine_->encode_message(role, text, !s_->conversation_started));  // throws before anything changes
    s_->conversation_started = true;
    s_->user_turn_open = false;
  }

  Engine<M>* engine_;
  std::unique_ptr<detail::ContextState> s_;
};

}  // namespace piecrust
