#pragma once
// The Model concept: what the runtime drives. A model owns its weights and execution space; the KV
// storage is a separate object (its pages are managed by the runtime's PagePool).

#include <piecrust/exec/execution_space.hpp>
#include <piecrust/model/forward_batch.hpp>

#include <concepts>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

namespace piecrust {

/// Shapes the runtime needs to size pages, batches and logits.
struct ModelShape {
  std::size_t vocab_size = 0;
  std::size_t num_layers = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t context_length = 0;
  // Layers that see only the last `sliding_window` KV slots (Gemma 3's local layers, Mistral), one flag per
  // layer, or empty: the engine then keeps their K/V in a window store (PagePool's WindowStore), passes its pages
  // as ForwardBatch::window, and the model makes its cache with make_kv_cache(num_pages, page_size, window_pages).
  std::size_t sliding_window = 0;
  std::vector<bool> window_layers;  // [num_layers] or empty
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

/// A model whose per-step state (activations, adapter copies) lives in a workspace its caller holds, so that
/// one model serves several engines on several threads: `make_workspace()` gives one, and the const
/// `forward(kv, batch, logits, workspace)` reads only the weights and writes only the cache, the logits and the
/// workspace. (Concurrent calls also need a space that several threads may use at once.)
template <class M>
concept WorkspaceModel = Model<M> && requires(M const& cm, typename M::kv_cache_type& kv, ForwardBatch const& b,
                                              std::span<float> logits, typename M::workspace_type& ws) {
  { cm.make_workspace() } -> std::same_as<typename M::workspace_type>;
  cm.forward(kv, b, logits, ws);
};

namespace detail {

struct NoWorkspace {};

/// The workspace a caller of `M` holds: M's own type for a WorkspaceModel, else nothing.
template <class M>
struct WorkspaceOf {
  using type = NoWorkspace;
  static type make(M const&) { return {}; }
};
template <WorkspaceModel M>
struct WorkspaceOf<M> {
  using type = typename M::workspace_type;
  static type make(M const& m) { return m.make_workspace(); }
};

/// One step of `model` in the caller's workspace, or in the model's own state when it has no workspaces.
template <Model M>
void forward_in(M& model, typename M::kv_cache_type& kv, ForwardBatch const& batch, std::span<float> logits,
                typename WorkspaceOf<M>::type& ws) {
  if constexpr (WorkspaceModel<M>) {
    std::as_const(model).forward(kv, batch, logits, ws);
  } else {
    model.forward(kv, batch, logits);
  }
}

}  // namespace detail

}  // namespace piecrust
