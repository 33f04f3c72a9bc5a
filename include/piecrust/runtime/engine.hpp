#pragma once
// Engine: owns the model, the page pool and KV storage, runs programs (Task coroutines) and batches every
// pending forward pass of every live context into one model step (iteration-level batching). A facade over
// its parts: the program loop (scheduler.hpp), the step's batch (step_builder.hpp), sampling and probes on
// the model's space (pass_logits.hpp), KV export/import (kv_transfer.hpp) and LoRA adapters
// (adapter_registry.hpp).
//
//   LlamaModel<Host> model(LlamaWeights::from_gguf(file));
//   Engine engine(model, {.num_pages = 2048}, &tokenizer, chat_template);
//   engine.spawn(my_program(engine));      // Task<void> programs
//   engine.run();                           // until every program has finished
//   auto text = engine.block_on(single_context_program(engine));   // one program, its result
//   AdapterId id = engine.load_adapter("terse", "terse-lora.gguf");  // LoRA, selected per pass: fwd.adapter(id)
//
// The loop is single-threaded and deterministic: passes are batched and answered in the order they were
// submitted, and sampling randomness is keyed by (seed, context, draw), so the same program with the same
// seed produces the same tokens whatever else runs beside it.
//
// Errors stay with the program that made them: a pass that cannot join a step (no pages, rows that do not
// fit, an adapter unloaded, a second pass of a context already in flight) or whose samplers fail is answered
// with its error and its context left as it was, while the other passes of the step compute exactly what
// they would without it. If the model fails a whole step, each pass is run again in a step of its own.
//
// Threads: an engine belongs to the thread that created it, or to the last one that called adopt_thread();
// every public call (and every Context / Forward call that reaches the engine) checks it and throws
// InvalidState naming both threads otherwise. Contexts belong to their engine's thread. A model is shared
// read-only: engines on several threads may use one model, each engine stepping it in a workspace of its own
// (WorkspaceModel), when the model's space may be used from several threads at once (Host may).

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/exec/memory_of.hpp>
#include <piecrust/kernels/copy.hpp>
#include <piecrust/kernels/kv_pages.hpp>
#include <piecrust/kernels/logit_step.hpp>
#include <piecrust/model/chat_template.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/model/model_concept.hpp>
#include <piecrust/model/model_identity.hpp>
#include <piecrust/model/tokenizer.hpp>
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/adapter_registry.hpp>
#include <piecrust/runtime/context.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/kv_transfer.hpp>
#include <piecrust/runtime/kv_trust.hpp>
#include <piecrust/runtime/pass_logits.hpp>
#include <piecrust/runtime/scheduler.hpp>
#include <piecrust/runtime/step_builder.hpp>
#include <piecrust/runtime/task.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace piecrust {

struct EngineOptions {
  std::size_t num_pages = 1024;     // KV pages in the pool
  std::uint32_t page_size = 16;     // tokens per page
  std::uint64_t seed = 0;           // sampling seed (SampleKey::seed)
  std::string model_id;             // an extra label in KV exports: imports need the same identity and label
  // The model's identity (model_identity(weights, tokenizer)) when already computed, say once for several
  // engines sharing a model; otherwise the engine hashes the weights at its first export or import.
  std::optional<ModelIdentity> identity;
  // For a model with sliding-window layers (ModelShape::window_layers): the pages of the window store that
  // holds those layers' K/V (PagePool's WindowStore). A context then holds about window / page_size + 1 of
  // them however long it grows, and pages that left every window give theirs back. Unset: num_pages (never
  // runs out before the pages do); fewer bounds the memory those layers take; 0: no store (those layers keep
  // every page, nothing is released).
  std::optional<std::size_t> window_pages;
};

struct EngineStats {
  std::size_t steps = 0;   // model steps run
  std::size_t passes = 0;  // forward passes answered
  std::size_t tokens = 0;  // tokens computed
};

/// The KV storage the engine needs from a model: per-layer paged pools (see KvCache).
template <class K>
concept PagedKvStorage = requires(K& kv, std::size_t l) {
  { kv.num_layers() } -> std::convertible_to<std::size_t>;
  kv.layer(l).page_stride();
  kv.layer(l).data;
};

/// A model that LoRA adapters can be loaded for: a Llama-family model that applies ForwardBatch::adapters and
/// exposes its config (the projection shapes adapters are checked against).
template <class M>
concept LoraCapableModel = requires(M const& m) {
  { m.config() } -> std::convertible_to<LlamaConfig const&>;
};

template <class M>
class Engine {
  static_assert(Model<M>, "piecrust::Engine: M must model piecrust::Model");

 public:
  using model_type = M;
  using kv_cache_type = typename M::kv_cache_type;
  using space_type = typename M::space_type;
  static_assert(PagedKvStorage<kv_cache_type>, "piecrust::Engine: the model's KV cache must expose paged layers");

  /// `tokenizer` (optional, not owned) enables text fills and decoded generations; `chat` selects the chat
  /// template for fill_system/fill_user/fill_assistant.
  Engine(M& model, EngineOptions options = {}, Tokenizer const* tokenizer = nullptr,
         std::optional<ChatTemplate> chat = std::nullopt)
      : model_(&model),
        shape_(model.shape()),
        options_(std::move(options)),
        pool_(options_.num_pages, options_.page_size, window_store(shape_, options_)),
        kv_(make_kv_cache(model, options_, pool_)),
        tokenizer_(tokenizer),
        chat_(std::move(chat)),
        workspace_(detail::WorkspaceOf<M>::make(model)) {}

  Engine(Engine const&) = delete;
  Engine& operator=(Engine const&) = delete;
  ~Engine() { scheduler_.clear(); }  // program frames own Contexts whose pages live in pool_: destroy them first

  [[nodiscard]] M& model() {
    check_thread("Engine::model");
    return *model_;
  }
  [[nodiscard]] ModelShape const& shape() const {
    check_thread("Engine::shape");
    return shape_;
  }
  [[nodiscard]] PagePool& pool() {
    check_thread("Engine::pool");
    return pool_;
  }
  [[nodiscard]] kv_cache_type& kv_cache() {
    check_thread("Engine::kv_cache");
    return kv_;
  }
  [[nodiscard]] EngineStats const& stats() const {
    check_thread("Engine::stats");
    return stats_;
  }
  [[nodiscard]] EngineOptions const& options() const {
    check_thread("Engine::options");
    return options_;
  }
  [[nodiscard]] Tokenizer const* tokenizer() const {
    check_thread("Engine::tokenizer");
    return tokenizer_;
  }

  // ---- threads ----

  /// The thread the engine belongs to: the one that created it, or the last one that called adopt_thread().
  [[nodiscard]] std::thread::id owner_thread() const noexcept { return owner_.load(std::memory_order_relaxed); }

  /// Makes the calling thread the engine's owner (and its contexts'); the previous owner may not use it any
  /// more. The hand-over itself must be ordered by the program (a join, a mutex, a future): the previous
  /// owner must be done with the engine. Throws InvalidState (owner unchanged) while the engine runs programs.
  void adopt_thread() {
    if (running_.load()) {
      detail::fail<InvalidState>("Engine::adopt_thread: the engine is running programs on thread ", owner_thread());
    }
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }

  /// Throws InvalidState, naming both threads, unless the calling thread owns the engine. `op` names the call.
  void check_thread(char const* op) const {
    std::thread::id const owner = owner_.load(std::memory_order_relaxed);
    if (std::this_thread::get_id() != owner) [[unlikely]] {
      detail::fail<InvalidState>(op, ": called on thread ", std::this_thread::get_id(), ", but the engine belongs to thread ",
                                 owner, " (one thread uses an engine; hand it over with Engine::adopt_thread)");
    }
  }

  /// A fresh, empty context. Each context gets its own random stream, numbered in creation order.
  [[nodiscard]] Context<M> create_context() {
    check_thread("Engine::create_context");
    return Context<M>(*this, std::make_unique<detail::ContextState>(pool_, next_context_id_++));
  }

  /// Adds a program; it starts at the next run().
  void spawn(Task<void> program) {
    check_thread("Engine::spawn");
    scheduler_.spawn(std::move(program));
  }

  /// Runs every spawned program to completion, batching their passes step by step. Rethrows the first
  /// exception a program ended with. Throws InvalidState if programs wait on something that never comes.
  void run() {
    check_thread("Engine::run");
    struct Running {  // adopt_thread refuses while programs run
      std::atomic<bool>& flag;
      bool const was = flag.exchange(true);
      ~Running() { flag.store(was); }
    } const running{running_};
    scheduler_.run([this](std::vector<detail::PassRequest*> passes) { step(std::move(passes)); });
  }

  /// Runs one program (and anything already spawned) and returns its result.
  template <class T>
  T block_on(Task<T> program) {
    std::optional<std::conditional_t<std::is_void_v<T>, int, T>> result;
    spawn(detail::Scheduler::capture(std::move(program), result));
    run();
    if constexpr (!std::is_void_v<T>) return std::move(*result);
  }

  /// Runs tasks concurrently inside a program: their passes share engine steps. Results in input order;
  /// the first exception is rethrown after all have finished.
  template <class T>
  Task<std::vector<T>> when_all(std::vector<Task<T>> tasks) {
    check_thread("Engine::when_all");
    return scheduler_.when_all(std::move(tasks));
  }

  // ---- LoRA adapters ----

  /// Registers `adapter` under `name`; select it for a pass with Forward::adapter(id). Throws InvalidArgument
  /// (nothing registered) for an empty or taken name, or an adapter whose shapes do not fit the model (the
  /// message names the tensor and both shapes).
  AdapterId load_adapter(std::string name, LoraAdapter adapter)
    requires LoraCapableModel<M>
  {
    check_thread("Engine::load_adapter");
    return adapters_.load(std::move(name), std::move(adapter), model_->config());
  }

  /// Reads a GGUF LoRA adapter file (LoraAdapter::from_file) and registers it under `name`. Throws what
  /// from_file throws, or what load_adapter(name, adapter) throws; nothing is registered then.
  AdapterId load_adapter(std::string name, std::filesystem::path const& gguf)
    requires LoraCapableModel<M>
  {
    check_thread("Engine::load_adapter");
    return load_adapter(std::move(name), LoraAdapter::from_file(gguf.string(), model_->config()));
  }

  /// The adapter loaded under `name`, if any.
  [[nodiscard]] std::optional<AdapterId> find_adapter(std::string_view name) const {
    check_thread("Engine::find_adapter");
    return adapters_.find(name);
  }
  [[nodiscard]] bool has_adapter(AdapterId id) const {
    check_thread("Engine::has_adapter");
    return adapters_.contains(id);
  }
  /// The adapter `id`. Throws OutOfRange when it is not loaded.
  [[nodiscard]] LoraAdapter const& adapter(AdapterId id) const {
    check_thread("Engine::adapter");
    LoraAdapter const* a = adapters_.get(id);
    if (a == nullptr) detail::fail<OutOfRange>("Engine::adapter: adapter id ", id.value, " is not loaded");
    return *a;
  }
  /// Unloads adapter `id`. Passes already queued with it fail with InvalidArgument at the next step (their
  /// contexts unchanged). Throws OutOfRange when it is not loaded.
  void unload_adapter(AdapterId id) {
    check_thread("Engine::unload_adapter");
    if (!adapters_.unload(id)) detail::fail<OutOfRange>("Engine::unload_adapter: adapter id ", id.value, " is not loaded");
  }

  // ---- used by Context and Forward ----

  /// Queues a pass (Forward::execute's awaiter). A pass of a context whose pass is still queued is answered at
  /// once with InvalidState naming the context: a context runs one pass at a time (Forward::execute).
  void enqueue(detail::PassRequest* pass) {
    check_thread("Forward::execute");
    detail::ContextState& cs = *pass->ctx;
    if (cs.pass_in_flight != 0) {
      pass->error = std::make_exception_ptr(InvalidState(detail::message(
          "Forward::execute: context ", cs.id, " already has pass ", cs.pass_in_flight, " in flight (a context runs one pass at a time)")));
      finish(pass);
      return;
    }
    cs.pass_in_flight = pass->serial;
    scheduler_.enqueue(pass);
  }

  /// Plain text: control-token markers written in it ("<|im_end|>") stay ordinary text.
  [[nodiscard]] std::vector<std::uint32_t> encode(std::string_view text) const {
    check_thread("Engine::encode");
    TextSpan const part{text, false};
    return encode_spans(std::span<TextSpan const>(&part, 1), "Engine::encode");
  }

  /// Text whose control-token markers are parsed: only for text the program wrote itself, never user input.
  [[nodiscard]] std::vector<std::uint32_t> encode_with_special_tokens(std::string_view text) const {
    check_thread("Engine::encode_with_special_tokens");
    TextSpan const part{text, true};
    return encode_spans(std::span<TextSpan const>(&part, 1), "Engine::encode_with_special_tokens");
  }

  /// One chat message in the engine's template (preceded by its begin markup when `begin_conversation`): the
  /// template's markup gives control tokens, `role` and `text` never do.
  [[nodiscard]] std::vector<std::uint32_t> encode_message(std::string_view role, std::string_view text,
                                                          bool begin_conversation) const {
    check_thread("Engine::encode_message");
    auto const& chat = chat_template();
    std::vector<TextSpan> parts;
    if (begin_conversation && !chat.begin_markup().empty()) parts.push_back({chat.begin_markup(), true});
    chat.append_message(parts, role, text);
    return encode_spans(parts, "Engine::encode_message");
  }

  /// Spans of text, control tokens parsed only in those marked parse_special (Tokenizer::encode_spans).
  [[nodiscard]] std::vector<std::uint32_t> encode_spans(std::span<TextSpan const> parts,
                                                        char const* who = "Engine::encode_spans") const {
    check_thread(who);
    if (tokenizer_ == nullptr) detail::fail<InvalidState>(who, ": text needs a tokenizer (pass one to the Engine)");
    auto const ids = tokenizer_->encode_spans(parts);
    return {ids.begin(), ids.end()};
  }

  [[nodiscard]] std::string decode_text(std::span<std::uint32_t const> ids) const {
    check_thread("Engine::decode_text");
    if (tokenizer_ == nullptr) return {};
    std::vector<TokenId> t(ids.begin(), ids.end());
    return tokenizer_->decode(t);
  }

  [[nodiscard]] ChatTemplate const& chat_template() const {
    check_thread("Engine::chat_template");
    if (!chat_) detail::fail<InvalidState>("Engine: chat fills need a chat template (pass one to the Engine)");
    return *chat_;
  }

  Context<M> fork_context(detail::ContextState const& parent) {
    check_thread("Context::fork");
    auto child = std::make_unique<detail::ContextState>(pool_, next_context_id_);
    PageTableFork f = parent.table.fork();  // throws OutOfPages before anything changes
    copy_kv_pages(model_->space(), kv_, std::span<PageCopy const>(f.copies));
    child->table = std::move(f.table);
    child->pending = parent.pending;
    child->user_turn_open = parent.user_turn_open;
    child->conversation_started = parent.conversation_started;
    child->masked = parent.masked;
    child->adapter = parent.adapter;
    child->next_logits = parent.next_logits;  // immutable: shared, never copied
    ++next_context_id_;
    return Context<M>(*this, std::move(child));
  }

  /// The identity recorded in this engine's KV exports and required of imports: options().identity, or the
  /// model's weights and this engine's tokenizer hashed once, on first use. Throws Unsupported for a model
  /// type without LlamaWeights when options().identity is not set.
  [[nodiscard]] ModelIdentity const& model_identity() {
    check_thread("Engine::model_identity");
    if (!options_.identity) {
      if constexpr (requires { { model_->weights() } -> std::convertible_to<LlamaWeights const&>; }) {
        options_.identity = piecrust::model_identity(model_->weights(), tokenizer_);
      } else {
        detail::fail<Unsupported>("Engine: KV export and import need the model's identity; set EngineOptions::identity");
      }
    }
    return *options_.identity;
  }

  std::vector<std::uint8_t> export_pages(detail::ContextState const& s) {
    check_thread("Engine::export_pages");
    return detail::export_committed_pages(model_->space(), kv_, s.table, export_header());
  }

  /// Checks the blob whole (format, identity, layout, ids, positions) before it touches the pool; the new
  /// context takes its id only on success, so a refused import changes nothing (not even later contexts'
  /// random streams).
  Context<M> import_pages(std::span<std::uint8_t const> blob, KvTrust trust = KvTrust::untrusted) {
    check_thread("Engine::import_pages");
    KvExport const e = decode_kv_export(blob);
    detail::check_import_fits(e.header, export_header());
    detail::check_import_records(e, shape_.vocab_size, shape_.context_length);
    auto state = std::make_unique<detail::ContextState>(pool_, next_context_id_);  // freed, with its pages, on a throw
    state->masked = detail::import_pages_into(model_->space(), kv_, e, state->table, trust);
    ++next_context_id_;
    return Context<M>(*this, std::move(state));
  }

  /// Draws the next token of a context that has nothing pending from its kept next-token logits
  /// (ContextState::next_logits), with `sampler` under `mask` (nullptr: every id), on the model's space: the
  /// token and its ln p, as a pass's sample at that position would give (the same draw of the context's random
  /// stream). Throws InvalidState (naming `op`) when the context keeps no logits or has a pass in flight,
  /// InvalidArgument for an invalid sampler or mask; nothing changes then.
  std::pair<std::uint32_t, float> sample_next_logits(detail::ContextState& cs, SamplerSpec const& sampler,
                                                     LogitMask const* mask, char const* op) {
    if (mask != nullptr && mask->empty()) mask = nullptr;
    SampleKey const key{options_.seed, cs.id, cs.sample_step};
    LogitRowPlan const plan = detail::sample_row_plan(sampler, key, cs.table, cs.table.seq_len(), mask);
    LogitRowResult r = read_next_logits(cs, plan, op);
    auto const picked = detail::sampled_token(sampler, r);
    ++cs.sample_step;
    return picked;
  }

  /// The distribution probe Distribution{temperature, k} over a context's kept next-token logits (ids and
  /// probabilities, descending). Throws as sample_next_logits does, and InvalidArgument for k > vocab or a
  /// temperature that is not > 0.
  std::pair<std::vector<std::uint32_t>, std::vector<float>> next_logits_distribution(detail::ContextState& cs,
                                                                                      Distribution d) {
    LogitRowResult r = read_next_logits(cs, LogitRowPlan{logit_task::TopK{d.k, d.temperature}, nullptr},
                                        "Context::decode_step_dist");
    return {std::move(r.ids), std::move(r.values)};
  }

 private:
  // The window store for the model's sliding-window layers, if any (see EngineOptions::window_pages).
  static WindowStore window_store(ModelShape const& shape, EngineOptions const& o) {
    bool const windowed = shape.sliding_window > 0 &&
                          std::find(shape.window_layers.begin(), shape.window_layers.end(), true) != shape.window_layers.end();
    if (!windowed || !supports_window_store) return {};
    return WindowStore{o.window_pages.value_or(o.num_pages), shape.sliding_window};
  }
  static constexpr bool supports_window_store = requires(M const& m, std::size_t n) {
    { m.make_kv_cache(n, n, n) } -> std::same_as<kv_cache_type>;
  };
  static kv_cache_type make_kv_cache(M const& model, EngineOptions const& o, PagePool const& pool) {
    if constexpr (supports_window_store) {
      if (pool.has_window_store()) return model.make_kv_cache(o.num_pages, o.page_size, pool.window_store().pages);
    }
    return model.make_kv_cache(o.num_pages, o.page_size);
  }

  KvExportHeader export_header() {
    KvExportHeader h;
    h.fingerprint = model_identity().to_string();
    if (!options_.model_id.empty()) h.fingerprint += ";label=" + options_.model_id;
    h.page_size = options_.page_size;
    h.num_layers = static_cast<std::uint32_t>(kv_.num_layers());
    h.num_kv_heads = static_cast<std::uint32_t>(shape_.num_kv_heads);
    h.head_dim = static_cast<std::uint32_t>(shape_.head_dim);
    h.element_size = static_cast<std::uint32_t>(sizeof(typename kv_cache_type::value_type));
    return h;
  }

  // A pass admitted to a step: its pages are reserved and its tokens appended to its page table.
  struct Admitted {
    detail::PassRequest* pass;
    std::size_t reserved_pages;
    std::size_t kv_before;
    LoraAdapter const* adapter;  // of every token of the pass, or nullptr
    std::uint64_t sample_step;   // the context's draws before the pass (restored if it fails)
  };

  void rollback(Admitted const& a) {
    detail::ContextState& cs = *a.pass->ctx;
    cs.table.truncate_working_page_tokens(a.pass->tokens.size());
    cs.table.release_working_pages(a.reserved_pages);
    cs.sample_step = a.sample_step;
  }

  void finish(detail::PassRequest* pass) {
    if (pass->ctx->pass_in_flight == pass->serial) pass->ctx->pass_in_flight = 0;
    scheduler_.finish(pass);
    ++stats_.passes;
  }

  void fail(Admitted const& a, std::exception_ptr error) {
    rollback(a);
    a.pass->error = std::move(error);
    finish(a.pass);
  }

  void fail_all(std::span<Admitted const> admitted, std::exception_ptr const& error) {
    for (Admitted const& a : admitted) fail(a, error);
  }

  /// Reserves the pass's pages and appends its tokens, or answers it with the error (nothing changed).
  std::optional<Admitted> admit(detail::PassRequest* pass) {
    LoraAdapter const* adapter = nullptr;
    if (pass->adapter) {
      adapter = adapters_.get(*pass->adapter);
      if (adapter == nullptr) {
        pass->error = std::make_exception_ptr(InvalidArgument(
            detail::message("Forward::execute: adapter id ", pass->adapter->value, " was unloaded before the pass ran")));
        finish(pass);
        return std::nullopt;
      }
    }
    PageTable& t = pass->ctx->table;
    pass->ctx->masked.truncate(t.seq_len());  // slots truncated away since the last pass are no longer masked
    std::size_t const n = pass->tokens.size();
    std::size_t const need = n > t.working_capacity() ? n - t.working_capacity() : 0;
    std::size_t const pages = (need + options_.page_size - 1) / options_.page_size;
    std::size_t const kv_before = t.seq_len();
    try {
      t.reserve_working_pages(pages);
    } catch (...) {
      pass->error = std::current_exception();
      finish(pass);
      return std::nullopt;
    }
    std::vector<TokenMeta> meta(n);
    std::uint64_t const adapter_tag = pass->adapter ? pass->adapter->value : 0;
    for (std::size_t i = 0; i < n; ++i) meta[i] = TokenMeta{pass->tokens[i], pass->positions[i], false, adapter_tag};
    t.append_working_tokens(meta);
    return Admitted{pass, pages, kv_before, adapter, pass->ctx->sample_step};
  }

  /// The step builder's view of an admitted pass (its masks are moved into the step).
  static StepPass step_pass(Admitted const& a) {
    detail::PassRequest& pass = *a.pass;
    PageTable const& t = pass.ctx->table;
    StepPass sp;
    sp.tokens = pass.tokens;
    sp.positions = pass.positions;
    sp.kv_before = a.kv_before;
    sp.kv_pages = t.kv_indices();
    if (t.pool().has_window_store()) {
      sp.window_pages = t.kv_window_indices();
      sp.window_floor = t.window_floor();
    }
    sp.last_page_len = t.kv_last_page_len();
    sp.prefix = pass.prefix;
    sp.masks = std::move(pass.masks);
    sp.masked = &pass.ctx->masked;
    for (auto const& s : pass.samples) sp.logit_indices.insert(sp.logit_indices.end(), s.indices.begin(), s.indices.end());
    for (auto const& pr : pass.probes) sp.logit_indices.push_back(static_cast<std::uint32_t>(pr.index));
    sp.keep_last_logits = pass.keep_next_logits;
    sp.adapter = a.adapter;
    return sp;
  }

  /// One model step over every queued pass: admit, build the batch, forward, sample and probe, answer. Each
  /// failure is answered to the pass that made it (see the header); the others run as they would without it.
  void step(std::vector<detail::PassRequest*> queued) {
    std::vector<Admitted> admitted;  // [admitted passes]
    for (detail::PassRequest* pass : queued) {
      if (auto a = admit(pass)) admitted.push_back(*a);
    }
    if (admitted.empty()) return;

    StepBatch batch;
    try {
      std::vector<StepPass> passes;  // [admitted passes]
      passes.reserve(admitted.size());
      for (Admitted const& a : admitted) passes.push_back(step_pass(a));
      batch = build_step(passes, options_.page_size);
    } catch (...) {
      fail_all(admitted, std::current_exception());  // out of memory: the builder answers bad rows per pass
      return;
    }
    for (StepBatch::Rejected const& r : batch.rejected) fail(admitted[r.pass], r.error);
    std::vector<Admitted> joined;  // [batch.size()] the passes of the batch, in its order
    joined.reserve(batch.size());
    for (std::size_t const i : batch.members) joined.push_back(admitted[i]);
    if (joined.empty() || run_batch(joined, batch, joined.size() > 1)) return;

    // The model failed the batch as a whole: each pass again in a batch of its own (their tokens are still in
    // their page tables, one context per pass), so only the passes that fail alone get the error.
    for (std::size_t i = 0; i < joined.size(); ++i) {
      std::span<Admitted const> const one(&joined[i], 1);
      try {
        run_batch(one, batch.alone(i), false);
      } catch (...) {
        fail_all(one, std::current_exception());
      }
    }
  }

  /// Runs `passes` (in `batch`'s order) through the model, then their samplers and probes, and answers each.
  /// Returns false, with no pass answered, when the model throws and `may_split` (the caller retries them).
  bool run_batch(std::span<Admitted const> passes, StepBatch const& batch, bool may_split) {
    std::size_t const vocab = shape_.vocab_size;
    std::size_t const num_logits = batch.logit_rows.size();
    std::span<float> logits;  // [num_logits][vocab], the model's space
    try {
      if (logits_.size() < num_logits * vocab) {
        logits_ = Buffer<float, typename space_type::memory_space>(num_logits * vocab, memory_of(model_->space()));
      }
      logits = std::span<float>(logits_.data(), num_logits * vocab);
      detail::forward_in(*model_, kv_, batch.forward_batch(), logits, workspace_);
    } catch (...) {
      if (may_split) return false;
      fail_all(passes, std::current_exception());
      return true;
    }
    ++stats_.steps;
    stats_.tokens += batch.tokens.size();

    // Every sampler and probe of the step in one logit_step on the model's space (one copy of results back).
    std::vector<LogitRowPlan> plan;  // [num_logits]
    plan.reserve(num_logits);
    for (Admitted const& a : passes) {
      try {
        detail::plan_logit_rows(*a.pass, options_.seed, vocab, plan);
      } catch (...) {
        a.pass->error = std::current_exception();
        plan.resize(plan.size() + detail::logit_rows_of(*a.pass), LogitRowPlan{logit_task::Raw{}, nullptr});  // kept aligned, unread
      }
    }
    std::vector<LogitRowResult> results;  // [num_logits]
    bool const together = [&] {
      try {
        results = logit_step(model_->space(), ShapedView<float const, 2>(logits.data(), batch.read_rows, vocab),
                             std::span<LogitRowPlan const>(plan), logit_arena_);
        return true;
      } catch (...) {
        return false;  // each pass's rows again on their own, below, so the error stays with its pass
      }
    }();
    for (std::size_t i = 0; i < passes.size(); ++i) {
      detail::PassRequest& pass = *passes[i].pass;
      if (!pass.error) {
        try {
          std::size_t const row = batch.first_row[i];
          if (together) {
            detail::answer_pass(pass, results, row);
          } else {
            std::size_t const rows = detail::logit_rows_of(pass);
            std::vector<LogitRowResult> mine;  // [rows]
            if (rows > 0) {
              mine = logit_step(model_->space(), ShapedView<float const, 2>(logits.data() + row * vocab, rows, vocab),
                                std::span<LogitRowPlan const>(plan).subspan(row, rows), logit_arena_);
            }
            detail::answer_pass(pass, mine, 0);
          }
        } catch (...) {
          pass.error = std::current_exception();
        }
      }
      std::shared_ptr<float const> kept;  // the pass's kept row; every pass replaces the context's (or drops it)
      if (!pass.error) {
        try {
          kept = kept_logits(batch, i, logits);
        } catch (...) {
          pass.error = std::current_exception();
        }
      }
      detail::ContextState& cs = *pass.ctx;
      if (pass.error) {
        rollback(passes[i]);
      } else {
        cs.pending.erase(cs.pending.begin(), cs.pending.begin() + static_cast<std::ptrdiff_t>(pass.consumed_pending));
        cs.next_logits = std::move(kept);
        // K/V under custom attention rows: the pages committed from here on are found only by this context
        // and its later forks, never by another context with the same tokens (PageTable::isolate_content).
        if (pass.custom_rows) cs.table.isolate_content();
        if (!pass.defer_commit) commit_full_pages(cs);
      }
      finish(&pass);
    }
    return true;
  }

  /// A copy of pass i's kept logits row (StepBatch::kept_row), in the model's space, or nullptr.
  std::shared_ptr<float const> kept_logits(StepBatch const& batch, std::size_t i, std::span<float const> logits) {
    std::size_t const row = batch.kept_row[i];
    if (row == StepBatch::no_row) return nullptr;
    std::size_t const vocab = shape_.vocab_size;
    auto copy = std::make_shared<Buffer<float, typename space_type::memory_space>>(vocab, memory_of(model_->space()));
    copy_in_space(model_->space(), std::span<float>(copy->data(), vocab), logits.subspan(row * vocab, vocab));
    return std::shared_ptr<float const>(copy, copy->data());  // owns the buffer, points at its row
  }

  /// One logit_step row over the context's kept logits, after the checks every reader of them makes.
  LogitRowResult read_next_logits(detail::ContextState& cs, LogitRowPlan const& plan, char const* op) {
    check_thread(op);
    if (!cs.next_logits) {
      detail::fail<InvalidState>(op, ": context ", cs.id, " has nothing pending and keeps no next-token logits "
                                 "(fill it, or flush() it first)");
    }
    if (cs.pass_in_flight != 0) {
      detail::fail<InvalidState>(op, ": context ", cs.id, " already has pass ", cs.pass_in_flight, " in flight");
    }
    std::size_t const vocab = shape_.vocab_size;
    auto results = logit_step(model_->space(), ShapedView<float const, 2>(cs.next_logits.get(), 1, vocab),
                              std::span<LogitRowPlan const>(&plan, 1), logit_arena_);
    return std::move(results.front());
  }

  // Pages computed under an adapter commit like any other: the adapter is part of each slot's TokenMeta, so
  // they are shared only with pages computed from the same tokens under the same adapter.
  static void commit_full_pages(detail::ContextState& cs) {
    PageTable& t = cs.table;
    std::size_t const k = t.working_token_count() / t.page_size();
    if (k == 0) return;
    try {
      t.commit_working_pages(k);
    } catch (InvalidState const&) {
      // Positions not above the committed ones (repeats, reordering): the pages stay working.
    }
  }

  M* model_;
  ModelShape shape_;
  EngineOptions options_;
  PagePool pool_;
  kv_cache_type kv_;
  Tokenizer const* tokenizer_;
  std::optional<ChatTemplate> chat_;
  Buffer<float, typename space_type::memory_space> logits_;  // [num_logits][vocab] of the last step, the model's space
  LogitStepArena<space_type> logit_arena_;                    // sampling and probe scratch, kept between steps
  detail::AdapterRegistry adapters_;
  typename detail::WorkspaceOf<M>::type workspace_;  // the model's per-step state for this engine's steps
  std::uint64_t next_context_id_ = 0;
  EngineStats stats_;
  std::atomic<std::thread::id> owner_{std::this_thread::get_id()};  // see check_thread
  std::atomic<bool> running_{false};                                // inside run()
  detail::Scheduler scheduler_;  // last: destroyed first (its program frames own Contexts)
};

}  // namespace piecrust
