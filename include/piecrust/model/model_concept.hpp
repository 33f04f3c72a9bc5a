#pragma once
// The Model concept: what the runtime drives. A model owns its weights and execution space; the KV
// storage is a separate object (its pages are managed by the runtime's PagePool).

#include <piecrust/exec/execution_space.hpp>
#include <piecrust/model/forward_batch.hpp>

#include <concepts>
#include <cstddef>
#include <span>

namespace piecrust {

/// Shapes the runtime needs to size pages, batches and logits.
struct ModelShape {
  std::size_t vocab_size = 0;
  std::size_t num_layers = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t context_length = 0;
};

/// A model opts in with `using model_type = Self;`, names its execution space (`space_type`, returned by
/// `space()`: every kernel of the model and of the runtime's work on its KV and logits runs there) and its KV
/// storage type (`kv_cache_type`, in that space's memory), makes one (`make_kv_cache(num_pages, page_size)`),
/// and runs a step: `forward(kv_cache, batch, logits)` writes logits [batch.logit_rows.size()][vocab_size]
/// (row i for token batch.logit_rows[i]) into `logits`, which is the space's memory, and appends the batch's
/// K/V to the cache. The batch's spans (tokens, positions, page table, masks) are host memory.
template <class M>
concept Model = std::same_as<typename M::model_type, M> && ExecutionSpace<typename M::space_type> &&
                requires(M& m, M const& cm, typename M::kv_cache_type& kv, ForwardBatch const& b, std::span<float> logits,
                         std::size_t n) {
                  { cm.space() } -> std::convertible_to<typename M::space_type const&>;
                  { cm.shape() } -> std::convertible_to<ModelShape>;
                  { cm.make_kv_cache(n, n) } -> std::same_as<typename M::kv_cache_type>;
                  m.forward(kv, b, logits);
                };

}  // namespace piecrust
