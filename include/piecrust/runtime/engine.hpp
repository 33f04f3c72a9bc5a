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

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/exec/memory_of.hpp>
#include <piecrust/kernels/kv_pages.hpp>
#include <piecrust/kernels/logit_step.hpp>
#include <piecrust/model/chat_template.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/model/model_concept.hpp>
#include <piecrust/model/tokenizer.hpp>
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/adapter_registry.hpp>
#include <piecrust/runtime/context.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/kv_transfer.hpp>
#include <piecrust/runtime/pass_logits.hpp>
#include <piecrust/runtime/scheduler.hpp>
#include <piecrust/runtime/step_builder.hpp>
#include <piecrust/runtime/task.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace piecrust {

struct EngineOptions {
  std::size_t num_pages = 1024;     // KV pages in the pool
  std::uint32_t page_size = 16;     // tokens per page
  std::uint64_t seed = 0;           // sampling seed (SampleKey::seed)
  std::string model_id;             // recorded in KV exports; imports from another model_id are refused
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
        pool_(options_.num_pages, options_.page_size),
        kv_(model.make_kv_cache(options_.num_pages, options_.page_size)),
        tokenizer_(tokenizer),
        chat_(std::move(chat)) {
    if (options_.model_id.empty()) {
      options_.model_id = detail::message("layers=", shape_.num_layers, ";kv_heads=", shape_.num_kv_heads,
                                          ";head_dim=", shape_.head_dim, ";vocab=", shape_.vocab_size);
    }
  }

  Engine(Engine const&) = delete;
  Engine& operator=(Engine const&) = delete;
  ~Engine() { scheduler_.clear(); }  // program frames own Contexts whose pages live in pool_: destroy them first

  [[nodiscard]] M& model() { return *model_; }
  [[nodiscard]] ModelShape const& shape() const { return shape_; }
  [[nodiscard]] PagePool& pool() { return pool_; }
  [[nodiscard]] kv_cache_type& kv_cache() { return kv_; }
  [[nodiscard]] EngineStats const& stats() const { return stats_; }
  [[nodiscard]] EngineOptions const& options() const { return options_; }
  [[nodiscard]] Tokenizer const* tokenizer() const { return tokenizer_; }

  /// A fresh, empty context. Each context gets its own random stream, numbered in creation order.
  [[nodiscard]] Context<M> create_context() {
    return Context<M>(*this, std::make_unique<detail::ContextState>(pool_, next_context_id_++));
  }

  /// Adds a program; it starts at the next run().
  void spawn(Task<void> program) { scheduler_.spawn(std::move(program)); }

  /// Runs every spawned program to completion, batching their passes step by step. Rethrows the first
  /// exception a program ended with. Throws InvalidState if programs wait on something that never comes.
  void run() {
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
    return scheduler_.when_all(std::move(tasks));
  }

  // ---- LoRA adapters ----

  /// Registers `adapter` under `name`; select it for a pass with Forward::adapter(id). Throws InvalidArgument
  /// (nothing registered) for an empty or taken name, or an adapter whose shapes do not fit the model (the
  /// message names the tensor and both shapes).
  AdapterId load_adapter(std::string name, LoraAdapter adapter)
    requires LoraCapableModel<M>
  {
    return adapters_.load(std::move(name), std::move(adapter), model_->config());
  }

  /// Reads a GGUF LoRA adapter file (LoraAdapter::from_file) and registers it under `name`. Throws what
  /// from_file throws, or what load_adapter(name, adapter) throws; nothing is registered then.
  AdapterId load_adapter(std::string name, std::filesystem::path const& gguf)
    requires LoraCapableModel<M>
  {
    return load_adapter(std::move(name), LoraAdapter::from_file(gguf.string(), model_->config()));
  }

  /// The adapter loaded under `name`, if any.
  [[nodiscard]] std::optional<AdapterId> find_adapter(std::string_view name) const { return adapters_.find(name); }
  [[nodiscard]] bool has_adapter(AdapterId id) const { return adapters_.contains(id); }
  /// The adapter `id`. Throws OutOfRange when it is not loaded.
  [[nodiscard]] LoraAdapter const& adapter(AdapterId id) const {
    LoraAdapter const* a = adapters_.get(id);
    if (a == nullptr) detail::fail<OutOfRange>("Engine::adapter: adapter id ", id.value, " is not loaded");
    return *a;
  }
  /// Unloads adapter `id`. Passes already queued with it fail with InvalidArgument at the next step (their
  /// contexts unchanged). Throws OutOfRange when it is not loaded.
  void unload_adapter(AdapterId id) {
    if (!adapters_.unload(id)) detail::fail<OutOfRange>("Engine::unload_adapter: adapter id ", id.value, " is not loaded");
  }

  // ---- used by Context and Forward ----

  void enqueue(detail::PassRequest* pass) { scheduler_.enqueue(pass); }

  [[nodiscard]] std::vector<std::uint32_t> encode(std::string_view text) const {
    if (tokenizer_ == nullptr) detail::fail<InvalidState>("Engine: text needs a tokenizer (pass one to the Engine)");
    auto const ids = tokenizer_->encode(text, EncodeOptions{false, true});
    return {ids.begin(), ids.end()};
  }

  [[nodiscard]] std::string decode_text(std::span<std::uint32_t const> ids) const {
    if (tokenizer_ == nullptr) return {};
    std::vector<TokenId> t(ids.begin(), ids.end());
    return tokenizer_->decode(t);
  }

  [[nodiscard]] ChatTemplate const& chat_template() const {
    if (!chat_) detail::fail<InvalidState>("Engine: chat fills need a chat template (pass one to the Engine)");
    return *chat_;
  }

  Context<M> fork_context(detail::ContextState const& parent) {
    auto child = std::make_unique<detail::ContextState>(pool_, next_context_id_);
    PageTableFork f = parent.table.fork();  // throws OutOfPages before anything changes
    copy_kv_pages(model_->space(), kv_, std::span<PageCopy const>(f.copies));
    child->table = std::move(f.table);
    child->pending = parent.pending;
    child->user_turn_open = parent.user_turn_open;
    child->conversation_started = parent.conversation_started;
    child->masked = parent.masked;
    child->adapter = parent.adapter;
    ++next_context_id_;
    return Context<M>(*this, std::move(child));
  }

  std::vector<std::uint8_t> export_pages(detail::ContextState const& s) {
    return detail::export_committed_pages(model_->space(), kv_, s.table, export_header());
  }

  Context<M> import_pages(std::span<std::uint8_t const> blob) {
    KvExport const e = decode_kv_export(blob);
    detail::check_import_fits(e.header, export_header());
    Context<M> ctx = create_context();  // destroyed, with its pages, if the import fails
    ctx.state().masked = detail::import_pages_into(model_->space(), kv_, e, ctx.state().table);
    return ctx;
  }

 private:
  KvExportHeader export_header() const {
    KvExportHeader h;
    h.fingerprint = options_.model_id;
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
  };

  void rollback(Admitted const& a) {
    PageTable& t = a.pass->ctx->table;
    t.truncate_working_page_tokens(a.pass->tokens.size());
    t.release_working_pages(a.reserved_pages);
  }

  void finish(detail::PassRequest* pass) {
    scheduler_.finish(pass);
    ++stats_.passes;
  }

  void fail_all(std::vector<Admitted> const& admitted, std::exception_ptr error) {
    for (Admitted const& a : admitted) {
      rollback(a);
      a.pass->error = error;
      finish(a.pass);
    }
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
    return Admitted{pass, pages, kv_before, adapter};
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
    sp.last_page_len = t.kv_last_page_len();
    sp.prefix = pass.prefix;
    sp.masks = std::move(pass.masks);
    sp.masked = &pass.ctx->masked;
    for (auto const& s : pass.samples) sp.logit_indices.insert(sp.logit_indices.end(), s.indices.begin(), s.indices.end());
    for (auto const& pr : pass.probes) sp.logit_indices.push_back(static_cast<std::uint32_t>(pr.index));
    sp.adapter = a.adapter;
    return sp;
  }

  /// One model step over every queued pass: admit, build the batch, forward, sample and probe, answer.
  void step(std::vector<detail::PassRequest*> queued) {
    std::vector<Admitted> admitted;
    for (detail::PassRequest* pass : queued) {
      if (auto a = admit(pass)) admitted.push_back(*a);
    }
    if (admitted.empty()) return;

    StepBatch batch;
    try {
      std::vector<StepPass> passes;  // [batch]
      passes.reserve(admitted.size());
      for (Admitted const& a : admitted) passes.push_back(step_pass(a));
      batch = build_step(passes, options_.page_size);
    } catch (...) {
      fail_all(admitted, std::current_exception());
      return;
    }

    std::size_t const vocab = shape_.vocab_size;
    std::size_t const num_logits = batch.logit_rows.size();
    if (logits_.size() < num_logits * vocab) {
      logits_ = Buffer<float, typename space_type::memory_space>(num_logits * vocab, memory_of(model_->space()));
    }
    std::span<float> const logits(logits_.data(), num_logits * vocab);  // [num_logits][vocab], the model's space
    try {
      model_->forward(kv_, batch.forward_batch(), logits);
    } catch (...) {
      fail_all(admitted, std::current_exception());
      return;
    }
    ++stats_.steps;
    stats_.tokens += batch.tokens.size();

    // Every sampler and probe of the step in one logit_step on the model's space (one copy of results back).
    std::vector<LogitRowPlan> plan;  // [num_logits]
    plan.reserve(num_logits);
    for (Admitted const& a : admitted) {
      try {
        detail::plan_logit_rows(*a.pass, options_.seed, vocab, plan);
      } catch (...) {
        a.pass->error = std::current_exception();
        plan.resize(plan.size() + detail::logit_rows_of(*a.pass), LogitRowPlan{logit_task::Raw{}, nullptr});  // kept aligned, unread
      }
    }
    std::vector<LogitRowResult> results;
    std::exception_ptr step_error;
    try {
      results = logit_step(model_->space(), ShapedView<float const, 2>(logits.data(), num_logits, vocab),
                           std::span<LogitRowPlan const>(plan), logit_arena_);
    } catch (...) {
      step_error = std::current_exception();
    }
    for (std::size_t i = 0; i < admitted.size(); ++i) {
      detail::PassRequest& pass = *admitted[i].pass;
      if (step_error && !pass.error) pass.error = step_error;
      if (!pass.error) {
        try {
          std::size_t row = batch.first_row[i];
          detail::answer_pass(pass, results, row);
        } catch (...) {
          pass.error = std::current_exception();
        }
      }
      detail::ContextState& cs = *pass.ctx;
      if (pass.error) {
        rollback(admitted[i]);
      } else {
        cs.pending.erase(cs.pending.begin(), cs.pending.begin() + static_cast<std::ptrdiff_t>(pass.consumed_pending));
        if (!pass.defer_commit) commit_full_pages(cs);
      }
      finish(&pass);
    }
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
  std::uint64_t next_context_id_ = 0;
  EngineStats stats_;
  detail::Scheduler scheduler_;  // last: destroyed first (its program frames own Contexts)
};

}  // namespace piecrust
