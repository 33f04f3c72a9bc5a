#pragma once
// SequenceRunner: drives a Model directly for a few independent sequences with a PagePool as the page
// allocator — what piecrust-chat, the model tests and the model benchmark use until the runtime's
// Engine exists. Each step appends tokens to some sequences and returns the logits of each one's last
// new token. Positions are 0, 1, 2, ... per sequence, attention is causal. A runner holds its own model
// workspace (WorkspaceModel), so runners on several threads may share one model.

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/model/model_concept.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust::detail {

template <Model M>
class SequenceRunner {
 public:
  struct Append {
    std::size_t sequence;
    std::span<TokenId const> tokens;
  };

  SequenceRunner(M& model, std::size_t num_pages, std::uint32_t page_size = 16)
      : model_(&model),
        kv_(model.make_kv_cache(num_pages, page_size)),
        pool_(num_pages, page_size),
        workspace_(WorkspaceOf<M>::make(model)) {}

  [[nodiscard]] std::size_t add_sequence() {
    seqs_.push_back({});
    return seqs_.size() - 1;
  }
  [[nodiscard]] std::size_t length(std::size_t s) const { return seqs_.at(s).length; }
  /// Frees a sequence's pages and empties it.
  void reset(std::size_t s) {
    for (PageId p : seqs_.at(s).pages) pool_.release(p);
    seqs_[s] = {};
  }

  /// Runs one model step. Returns logits [appends.size()][vocab] for each append's last token. On an
  /// error (OutOfPages, bad token) nothing is changed.
  [[nodiscard]] std::vector<float> step(std::span<Append const> appends) {
    std::size_t const page_size = pool_.page_size();
    std::vector<TokenId> tokens;
    std::vector<std::uint32_t> positions, qo_indptr{0}, kv_indptr{0}, kv_indices, last_len, rows;
    std::vector<std::vector<PageId>> new_pages(appends.size());
    std::size_t need = 0;
    for (auto const& a : appends) {
      auto const& s = seqs_.at(a.sequence);
      if (a.tokens.empty()) fail<InvalidArgument>("SequenceRunner::step: empty append for sequence ", a.sequence);
      std::size_t const total = s.length + a.tokens.size();
      need += (total + page_size - 1) / page_size - s.pages.size();
    }
    auto fresh = pool_.allocate(need);  // all or nothing
    std::size_t next = 0;
    for (std::size_t i = 0; i < appends.size(); ++i) {
      auto const& a = appends[i];
      auto const& s = seqs_[a.sequence];
      std::size_t const total = s.length + a.tokens.size();
      std::size_t const pages = (total + page_size - 1) / page_size;
      for (std::size_t p = s.pages.size(); p < pages; ++p) new_pages[i].push_back(fresh[next++]);
      for (std::size_t t = 0; t < a.tokens.size(); ++t) {
        tokens.push_back(a.tokens[t]);
        positions.push_back(static_cast<std::uint32_t>(s.length + t));
      }
      qo_indptr.push_back(static_cast<std::uint32_t>(tokens.size()));
      for (PageId p : s.pages) kv_indices.push_back(p);
      for (PageId p : new_pages[i]) kv_indices.push_back(p);
      kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
      last_len.push_back(static_cast<std::uint32_t>(total - (pages - 1) * page_size));
      rows.push_back(static_cast<std::uint32_t>(tokens.size() - 1));
    }
    ForwardBatch batch;
    batch.tokens = tokens;
    batch.positions = positions;
    batch.pages = {qo_indptr, kv_indptr, kv_indices, last_len};
    batch.logit_rows = rows;
    std::vector<float> logits(rows.size() * model_->shape().vocab_size);  // [appends][vocab]
    try {
      forward_in(*model_, kv_, batch, logits, workspace_);
    } catch (...) {
      for (PageId p : fresh) pool_.release(p);
      throw;
    }
    for (std::size_t i = 0; i < appends.size(); ++i) {
      auto& s = seqs_[appends[i].sequence];
      s.pages.insert(s.pages.end(), new_pages[i].begin(), new_pages[i].end());
      s.length += appends[i].tokens.size();
    }
    return logits;
  }

  /// One sequence, one step.
  [[nodiscard]] std::vector<float> step(std::size_t sequence, std::span<TokenId const> tokens) {
    Append const a{sequence, tokens};
    return step(std::span<Append const>(&a, 1));
  }

  [[nodiscard]] PagePool const& pool() const noexcept { return pool_; }

 private:
  struct Seq {
    std::size_t length = 0;
    std::vector<PageId> pages;
  };
  M* model_;
  typename M::kv_cache_type kv_;
  PagePool pool_;
  typename WorkspaceOf<M>::type workspace_;  // the model's per-step state for this runner's steps
  std::vector<Seq> seqs_;
};

}  // namespace piecrust::detail
