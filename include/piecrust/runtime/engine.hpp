#pragma once
// Engine: owns the model, the page pool and KV storage, runs programs (Task coroutines) and batches every
// pending forward pass of every live context into one model step (iteration-level batching).
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

#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/core/trim_plan.hpp>
#include <piecrust/kernels/kv_pages.hpp>
#include <piecrust/exec/memory_of.hpp>
#include <piecrust/kernels/logit_step.hpp>
#include <piecrust/kernels/probe.hpp>
#include <piecrust/kernels/sample.hpp>
#include <piecrust/model/chat_template.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/model/model_concept.hpp>
#include <piecrust/model/tokenizer.hpp>
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/context.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/pass_logits.hpp>
#include <piecrust/runtime/task.hpp>

#include <algorithm>
#include <cmath>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
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
  ~Engine() {
    // Program frames own Contexts whose pages live in pool_: destroy them first.
    roots_.clear();
    children_.clear();
  }

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
  void spawn(Task<void> program) {
    ready_.push_back(program.handle());
    roots_.push_back(std::move(program));
  }

  /// Runs every spawned program to completion, batching their passes step by step. Rethrows the first
  /// exception a program ended with. Throws InvalidState if programs wait on something that never comes.
  void run() {
    for (;;) {
      while (!ready_.empty()) {
        auto const h = ready_.front();
        ready_.pop_front();
        h.resume();
      }
      if (pending_.empty()) break;
      step();
    }
    std::vector<Task<void>> roots = std::move(roots_);
    roots_.clear();
    children_.clear();
    for (auto& r : roots) {
      if (!r.done()) detail::fail<InvalidState>("Engine::run: a program is suspended on something other than a pass");
    }
    for (auto& r : roots) r.result();  // rethrows the first failure
  }

  /// Runs one program (and anything already spawned) and returns its result.
  template <class T>
  T block_on(Task<T> program) {
    std::optional<std::conditional_t<std::is_void_v<T>, int, T>> result;
    spawn(capture(std::move(program), result));
    run();
    if constexpr (!std::is_void_v<T>) return std::move(*result);
  }

  /// Runs tasks concurrently inside a program: their passes share engine steps. Results in input order;
  /// the first exception is rethrown after all have finished.
  template <class T>
  Task<std::vector<T>> when_all(std::vector<Task<T>> tasks) {
    auto join = std::make_shared<Join<T>>(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      Task<void> child = run_child(std::move(tasks[i]), join, i);
      ready_.push_back(child.handle());
      children_.push_back(std::move(child));
    }
    co_await JoinAwaiter<T>{join.get()};
    if (join->error) std::rethrow_exception(join->error);
    std::vector<T> out;
    out.reserve(join->results.size());
    for (auto& r : join->results) out.push_back(std::move(*r));
    co_return out;
  }

  // ---- LoRA adapters ----

  /// Registers `adapter` under `name`; select it for a pass with Forward::adapter(id). Throws InvalidArgument
  /// (nothing registered) for an empty or taken name, or an adapter whose shapes do not fit the model (the
  /// message names the tensor and both shapes).
  AdapterId load_adapter(std::string name, LoraAdapter adapter)
    requires LoraCapableModel<M>
  {
    constexpr char const* op = "Engine::load_adapter";
    if (name.empty()) detail::fail<InvalidArgument>(op, ": the adapter name is empty");
    if (find_adapter(name)) detail::fail<InvalidArgument>(op, ": an adapter named \"", name, "\" is already loaded");
    LlamaConfig const& c = model_->config();
    LoraShape const want = LoraShape::of(c);
    if (adapter.shape().num_layers != want.num_layers) {
      detail::fail<InvalidArgument>(op, ": adapter \"", name, "\" has ", adapter.shape().num_layers,
                                    " layers, the model has ", want.num_layers);
    }
    std::string const where = detail::message(op, " \"", name, "\"");
    adapter.check_fits(want, where);
    AdapterId const id = detail::next_adapter_id();
    adapters_.emplace(id.value, AdapterEntry{std::move(name), std::make_unique<LoraAdapter const>(std::move(adapter))});
    return id;
  }

  /// Reads a GGUF LoRA adapter file (LoraAdapter::from_file) and registers it under `name`. Throws what
  /// from_file throws, or what load_adapter(name, adapter) throws; nothing is registered then.
  AdapterId load_adapter(std::string name, std::filesystem::path const& gguf)
    requires LoraCapableModel<M>
  {
    return load_adapter(std::move(name), LoraAdapter::from_file(gguf.string(), model_->config()));
  }

  /// The adapter loaded under `name`, if any.
  [[nodiscard]] std::optional<AdapterId> find_adapter(std::string_view name) const {
    for (auto const& [id, e] : adapters_) {
      if (e.name == name) return AdapterId{id};
    }
    return std::nullopt;
  }
  [[nodiscard]] bool has_adapter(AdapterId id) const { return adapters_.contains(id.value); }
  /// The adapter `id`. Throws OutOfRange when it is not loaded.
  [[nodiscard]] LoraAdapter const& adapter(AdapterId id) const {
    auto const it = adapters_.find(id.value);
    if (it == adapters_.end()) detail::fail<OutOfRange>("Engine::adapter: adapter id ", id.value, " is not loaded");
    return *it->second.adapter;
  }
  /// Unloads adapter `id`. Passes already queued with it fail with InvalidArgument at the next step (their
  /// contexts unchanged). Throws OutOfRange when it is not loaded.
  void unload_adapter(AdapterId id) {
    if (adapters_.erase(id.value) == 0) detail::fail<OutOfRange>("Engine::unload_adapter: adapter id ", id.value, " is not loaded");
  }

  // ---- used by Context and Forward ----

  void enqueue(detail::PassRequest* pass) { pending_.push_back(pass); }

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
    PageTable const& t = s.table;
    // Adapter ids mean nothing outside this process, so the format does not carry them: a page computed
    // under an adapter cannot be exported (imported as base-model K/V it would be shared with base contexts).
    for (std::size_t p = 0; p < t.committed_pages().size(); ++p) {
      for (TokenMeta const& m : t.committed_page_tokens(p)) {
        if (m.adapter != 0) {
          detail::fail<InvalidState>("Context::export_kv_pages: committed page ", p, " holds K/V computed under LoRA adapter id ",
                                     m.adapter, "; exported pages do not record adapters (nothing was exported)");
        }
      }
    }
    KvExport e;
    e.header = export_header(t.committed_pages().size());
    for (std::size_t p = 0; p < t.committed_pages().size(); ++p) {
      auto const meta = t.committed_page_tokens(p);
      e.tokens.insert(e.tokens.end(), meta.begin(), meta.end());
    }
    std::vector<std::uint32_t> const pages(t.committed_pages().begin(), t.committed_pages().end());
    e.bytes.resize(pages.size() * kv_.num_layers() * kv_.page_bytes());
    read_kv_pages(model_->space(), kv_, std::span<std::uint32_t const>(pages), std::as_writable_bytes(std::span(e.bytes)));
    return encode_kv_export(e);
  }

  Context<M> import_pages(std::span<std::uint8_t const> blob) {
    KvExport const e = decode_kv_export(blob);
    KvExportHeader const want = export_header(e.header.num_pages);
    auto mismatch = [](char const* field, auto got, auto expected) {
      detail::fail<InvalidArgument>("Context::from_imported: the entry's ", field, " is ", got, " but this engine's is ",
                                    expected);
    };
    if (e.header.fingerprint != want.fingerprint) mismatch("model", e.header.fingerprint, want.fingerprint);
    if (e.header.page_size != want.page_size) mismatch("page_size", e.header.page_size, want.page_size);
    if (e.header.num_layers != want.num_layers) mismatch("num_layers", e.header.num_layers, want.num_layers);
    if (e.header.num_kv_heads != want.num_kv_heads) mismatch("num_kv_heads", e.header.num_kv_heads, want.num_kv_heads);
    if (e.header.head_dim != want.head_dim) mismatch("head_dim", e.header.head_dim, want.head_dim);
    if (e.header.element_size != want.element_size) mismatch("element_size", e.header.element_size, want.element_size);

    Context<M> ctx = create_context();
    PageTable& t = ctx.state().table;
    std::size_t const pages = e.header.num_pages;
    t.reserve_working_pages(pages);  // OutOfPages: the new context is destroyed, nothing else changed
    t.append_working_tokens(e.tokens);
    std::vector<std::uint32_t> const ids(t.working_pages().begin(), t.working_pages().begin() + static_cast<std::ptrdiff_t>(pages));
    write_kv_pages(model_->space(), kv_, std::span<std::uint32_t const>(ids), std::as_bytes(std::span(e.bytes)));
    t.commit_working_pages(pages);  // equal pages already in the pool are shared
    ctx.state().masked = MaskedSlots::from_tokens(e.tokens);
    return ctx;
  }

 private:
  template <class T>
  struct Join {
    explicit Join(std::size_t n) : remaining(n), results(n) {}
    std::size_t remaining;
    std::coroutine_handle<> parent;
    std::vector<std::optional<T>> results;
    std::exception_ptr error;
  };

  template <class T>
  struct JoinAwaiter {
    Join<T>* join;
    bool await_ready() const noexcept { return join->remaining == 0; }
    void await_suspend(std::coroutine_handle<> h) const noexcept { join->parent = h; }
    void await_resume() const noexcept {}
  };

  template <class T>
  Task<void> run_child(Task<T> task, std::shared_ptr<Join<T>> join, std::size_t i) {
    try {
      join->results[i].emplace(co_await std::move(task));
    } catch (...) {
      if (!join->error) join->error = std::current_exception();
    }
    if (--join->remaining == 0 && join->parent) ready_.push_back(join->parent);
  }

  template <class T, class R>
  static Task<void> capture(Task<T> task, std::optional<R>& out) {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      out.emplace(0);
    } else {
      out.emplace(co_await std::move(task));
    }
  }

  KvExportHeader export_header(std::size_t num_pages) {
    KvExportHeader h;
    h.fingerprint = options_.model_id;
    h.page_size = options_.page_size;
    h.num_layers = static_cast<std::uint32_t>(kv_.num_layers());
    h.num_kv_heads = static_cast<std::uint32_t>(shape_.num_kv_heads);
    h.head_dim = static_cast<std::uint32_t>(shape_.head_dim);
    h.element_size = static_cast<std::uint32_t>(sizeof(typename kv_cache_type::value_type));
    h.num_pages = num_pages;
    return h;
  }

  // Work of one pass inside a step.
  struct Prepared {
    detail::PassRequest* pass;
    std::size_t reserved_pages;
    std::size_t kv_before;
    std::size_t first_token;  // index of the pass's first token in the step
    LoraAdapter const* adapter;  // of every token of the pass, or nullptr
    std::size_t first_row = 0;   // index of the pass's first logits row in the step
  };

  void rollback(Prepared const& p) {
    PageTable& t = p.pass->ctx->table;
    t.truncate_working_page_tokens(p.pass->tokens.size());
    t.release_working_pages(p.reserved_pages);
  }

  void finish(detail::PassRequest* pass) {
    ready_.push_back(pass->waiter);
    ++stats_.passes;
  }

  /// One model step over every pending pass.
  void step() {
    std::vector<detail::PassRequest*> batch = std::move(pending_);
    pending_.clear();
    std::uint32_t const ps = options_.page_size;
    std::vector<Prepared> prepared;
    for (detail::PassRequest* pass : batch) {
      LoraAdapter const* adapter = nullptr;
      if (pass->adapter) {
        auto const it = adapters_.find(pass->adapter->value);
        if (it == adapters_.end()) {
          pass->error = std::make_exception_ptr(InvalidArgument(
              detail::message("Forward::execute: adapter id ", pass->adapter->value, " was unloaded before the pass ran")));
          finish(pass);
          continue;
        }
        adapter = it->second.adapter.get();
      }
      PageTable& t = pass->ctx->table;
      pass->ctx->masked.truncate(t.seq_len());  // slots truncated away since the last pass are no longer masked
      std::size_t const n = pass->tokens.size();
      std::size_t const need = n > t.working_capacity() ? n - t.working_capacity() : 0;
      std::size_t const pages = (need + ps - 1) / ps;
      std::size_t const kv_before = t.seq_len();
      try {
        t.reserve_working_pages(pages);
      } catch (...) {
        pass->error = std::current_exception();
        finish(pass);
        continue;
      }
      std::vector<TokenMeta> meta(n);
      std::uint64_t const adapter_tag = pass->adapter ? pass->adapter->value : 0;
      for (std::size_t i = 0; i < n; ++i) meta[i] = TokenMeta{pass->tokens[i], pass->positions[i], false, adapter_tag};
      t.append_working_tokens(meta);
      prepared.push_back({pass, pages, kv_before, 0, adapter});
    }
    if (prepared.empty()) return;

    // The ragged batch, FlashInfer's layout.
    std::vector<TokenId> tokens;               // [num_tokens]
    std::vector<std::uint32_t> positions;      // [num_tokens]
    std::vector<std::uint32_t> qo_indptr{0};   // [batch + 1]
    std::vector<std::uint32_t> kv_indptr{0};   // [batch + 1]
    std::vector<std::uint32_t> kv_indices;     // [total pages]
    std::vector<std::uint32_t> last_page_len;  // [batch]
    std::vector<TrimPlan> trims;               // [batch] when any pass has masks
    std::vector<std::uint32_t> logit_rows;     // [num_logits]
    std::vector<LoraAdapter const*> adapters;  // [batch] when any pass has an adapter
    bool any_adapter = false;
    // Attention rows per pass: the pass's own rows (after causal rows for a non-indexable pending prefix), or,
    // when the context has masked slots (mask_token_range), causal rows that skip them; empty = plain causal.
    std::vector<std::vector<AttentionMask>> pass_rows(prepared.size());
    bool any_masks = false;
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      detail::PassRequest const& pass = *prepared[i].pass;
      if (!pass.masks.empty()) {
        pass_rows[i] = AttentionMask::causal_rows(prepared[i].kv_before, pass.prefix);
        pass_rows[i].insert(pass_rows[i].end(), pass.masks.begin(), pass.masks.end());
      } else {
        pass_rows[i] = rows_skipping_masked(pass.ctx->masked, prepared[i].kv_before, pass.tokens.size());
      }
      any_masks = any_masks || !pass_rows[i].empty();
    }
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      Prepared& p = prepared[i];
      detail::PassRequest const& pass = *p.pass;
      PageTable const& t = pass.ctx->table;
      p.first_token = tokens.size();
      p.first_row = logit_rows.size();
      tokens.insert(tokens.end(), pass.tokens.begin(), pass.tokens.end());
      positions.insert(positions.end(), pass.positions.begin(), pass.positions.end());
      qo_indptr.push_back(static_cast<std::uint32_t>(tokens.size()));
      auto const pages = t.kv_indices();
      kv_indices.insert(kv_indices.end(), pages.begin(), pages.end());
      kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
      last_page_len.push_back(t.kv_last_page_len());
      adapters.push_back(p.adapter);
      any_adapter = any_adapter || p.adapter != nullptr;
      if (any_masks) trims.push_back(TrimPlan::compute(ps, p.kv_before, pass.tokens.size(), pass_rows[i]));
      for (auto const& s : pass.samples) {
        for (std::size_t const i : s.indices) logit_rows.push_back(static_cast<std::uint32_t>(p.first_token + pass.prefix + i));
      }
      for (auto const& pr : pass.probes) logit_rows.push_back(static_cast<std::uint32_t>(p.first_token + pass.prefix + pr.index));
    }

    std::size_t const vocab = shape_.vocab_size;
    if (logits_.size() < logit_rows.size() * vocab) {
      logits_ = Buffer<float, typename space_type::memory_space>(logit_rows.size() * vocab, memory_of(model_->space()));
    }
    std::span<float> const logits(logits_.data(), logit_rows.size() * vocab);  // [num_logits][vocab], the model's space
    ForwardBatch fb;
    fb.tokens = tokens;
    fb.positions = positions;
    fb.pages = PagedBatch{qo_indptr, kv_indptr, kv_indices, last_page_len};
    if (any_masks) fb.attention = AttentionSelection{{}, trims};
    fb.logit_rows = logit_rows;
    if (any_adapter) fb.adapters = adapters;
    try {
      model_->forward(kv_, fb, logits);
    } catch (...) {
      auto const error = std::current_exception();
      for (Prepared const& p : prepared) {
        rollback(p);
        p.pass->error = error;
        finish(p.pass);
      }
      return;
    }
    ++stats_.steps;
    stats_.tokens += tokens.size();

    // Every sampler and probe of the step in one logit_step on the model's space (one copy of results back).
    std::vector<LogitRowPlan> plan;  // [num_logits]
    plan.reserve(logit_rows.size());
    for (Prepared const& p : prepared) {
      try {
        detail::plan_logit_rows(*p.pass, options_.seed, shape_.vocab_size, plan);
      } catch (...) {
        p.pass->error = std::current_exception();
        plan.resize(plan.size() + detail::logit_rows_of(*p.pass), LogitRowPlan{logit_task::Raw{}, nullptr});  // kept aligned, unread
      }
    }
    std::vector<LogitRowResult> results;
    std::exception_ptr step_error;
    try {
      results = logit_step(model_->space(), ShapedView<float const, 2>(logits.data(), logit_rows.size(), vocab),
                           std::span<LogitRowPlan const>(plan), logit_arena_);
    } catch (...) {
      step_error = std::current_exception();
    }
    std::size_t row = 0;
    for (Prepared const& p : prepared) {
      detail::PassRequest& pass = *p.pass;
      if (step_error && !pass.error) pass.error = step_error;
      if (!pass.error) {
        try {
          detail::answer_pass(pass, results, row);
        } catch (...) {
          pass.error = std::current_exception();
        }
      }
      row = p.first_row + detail::logit_rows_of(pass);
      detail::ContextState& cs = *pass.ctx;
      if (pass.error) {
        rollback(p);
      } else {
        cs.pending.erase(cs.pending.begin(), cs.pending.begin() + static_cast<std::ptrdiff_t>(pass.consumed_pending));
        if (!pass.defer_commit) commit_full_pages(cs);
      }
      finish(&pass);
    }
  }

  /// Causal rows for `n` new tokens after `kv_before` slots that also mask every slot flagged by
  /// mask_token_range; empty when no slot is flagged (plain causal attention). O(n x masked ranges), read from
  /// the context's MaskedSlots rather than by scanning the slots.
  static std::vector<AttentionMask> rows_skipping_masked(MaskedSlots const& masked, std::size_t kv_before, std::size_t n) {
    if (!masked.any_before(kv_before)) return {};
    Brle const history = masked.bits(kv_before);  // [kv_before] 1 = masked slot
    std::vector<AttentionMask> rows;  // [n]
    rows.reserve(n);
    for (std::size_t i = 0; i < n; ++i) rows.emplace_back(Brle(history).append(false, i + 1));
    return rows;
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
  std::deque<std::coroutine_handle<>> ready_;
  std::vector<detail::PassRequest*> pending_;
  std::vector<Task<void>> roots_;
  std::vector<Task<void>> children_;
  std::uint64_t next_context_id_ = 0;
  EngineStats stats_;
  struct AdapterEntry {
    std::string name;
    std::unique_ptr<LoraAdapter const> adapter;  // stable address: steps hold pointers to it
  };
  std::map<std::uint64_t, AdapterEntry> adapters_;  // by AdapterId::value
};

}  // namespace piecrust
