#pragma once
// The per-request LoRA updates of one model step (see lora_adapter.hpp), on the model's space. Each request
// of a ForwardBatch may name its own adapter (or none), so requests with different adapters share one step:
// the base projection runs once over every token, then y += (x A^T) (scale B)^T is added for the tokens of
// the requests whose adapter adapts that projection (the batched-LoRA scheme of S-LoRA, Sheng et al. 2023,
// and Punica, Chen et al. 2023, without their custom kernels): two f32 gemm calls per request, the second
// accumulating (beta = 1). gemm is batch-invariant, so a request's update does not depend on its neighbours.
//
// The adapters live on the host; LoraOnSpace keeps a copy of each adapter in use in the space's memory (A,
// and B already multiplied by scale), recognized by LoraAdapter::revision(), uploaded on first use.

#include <piecrust/core/error.hpp>
#include <piecrust/exec/buffer.hpp>
#include <piecrust/exec/execution_space.hpp>
#include <piecrust/exec/memory_of.hpp>
#include <piecrust/exec/shaped_view.hpp>
#include <piecrust/kernels/copy.hpp>
#include <piecrust/kernels/gemm.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/lora_adapter.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace piecrust::detail {

/// Adapters in use, in the memory of space S.
template <ExecutionSpace S>
class LoraOnSpace {
 public:
  using memory_space = typename S::memory_space;

  struct Pair {
    Buffer<float, memory_space> a;  // [rank][in]
    Buffer<float, memory_space> b;  // [out][rank], scale * B
    std::size_t rank = 0, in = 0, out = 0;
  };

  /// The space's copy of `ad`'s pair for (layer, target), or nullptr when the adapter has none there.
  Pair const* pair(S const& space, LoraAdapter const& ad, std::size_t layer, LoraTarget target) {
    if (layer >= ad.shape().num_layers) return nullptr;  // the engine refuses such adapters; never index past them
    auto it = adapters_.find(ad.revision());
    if (it == adapters_.end()) it = adapters_.emplace(ad.revision(), upload(space, ad)).first;
    auto const& p = it->second[layer * lora_target_count + static_cast<std::size_t>(target)];
    return p ? &*p : nullptr;
  }

  /// Drops every copy but those of `keep` (the adapters of the current step), once more than `limit` are held.
  void trim(std::span<LoraAdapter const* const> keep, std::size_t limit = 16) {
    if (adapters_.size() <= limit) return;
    std::erase_if(adapters_, [&](auto const& kv) {
      return std::none_of(keep.begin(), keep.end(), [&](LoraAdapter const* a) { return a != nullptr && a->revision() == kv.first; });
    });
  }

  /// Scratch for x A^T of a request's tokens: [tokens][rank], the space's memory.
  float* hidden(S const& space, std::size_t elements) {
    if (h_.size() < elements) h_ = Buffer<float, memory_space>(std::max(elements, 2 * h_.size()), memory_of(space));
    return h_.data();
  }

 private:
  static std::vector<std::optional<Pair>> upload(S const& space, LoraAdapter const& ad) {
    std::size_t const layers = ad.shape().num_layers;
    std::vector<std::optional<Pair>> out(layers * lora_target_count);  // [layer][target]
    for (std::size_t l = 0; l < layers; ++l) {
      for (std::size_t t = 0; t < lora_target_count; ++t) {
        LoraPair const* p = ad.pair(l, static_cast<LoraTarget>(t));
        if (p == nullptr) continue;
        std::vector<float> scaled(p->b.size());  // [out][rank]
        std::transform(p->b.begin(), p->b.end(), scaled.begin(), [&](float v) { return p->scale * v; });
        out[l * lora_target_count + t] = Pair{to_space(space, p->a), to_space(space, scaled), p->rank, p->in, p->out};
      }
    }
    return out;
  }

  std::map<std::uint64_t, std::vector<std::optional<Pair>>> adapters_;  // revision -> [layer][target]
  Buffer<float, memory_space> h_;                                       // [tokens][rank]
};

/// y[t] += (scale B) (A x[t]) for the tokens t of every request whose adapter has a pair for (layer, target).
///   x: [num_tokens][in], y: [num_tokens][out], both the space's memory
template <ExecutionSpace S>
void apply_lora(S const& space, LoraOnSpace<S>& on_space, ForwardBatch const& batch, std::size_t layer, LoraTarget target,
                ShapedView<float const, 2> x, ShapedView<float, 2> y) {
  if (batch.adapters.empty()) return;
  auto const& qo = batch.pages.qo_indptr;
  for (std::size_t b = 0; b < batch.adapters.size(); ++b) {
    LoraAdapter const* ad = batch.adapters[b];
    if (ad == nullptr) continue;
    auto const* p = on_space.pair(space, *ad, layer, target);
    std::size_t const n = qo[b + 1] - qo[b];
    if (p == nullptr || n == 0) continue;
    ShapedView<float, 2> const h(on_space.hidden(space, n * p->rank), n, p->rank);
    gemm(space, ShapedView<float const, 2>(x.data() + qo[b] * p->in, n, p->in), WeightMatrix{WeightType::f32, p->a.data(), p->rank, p->in}, h);
    gemm(space, ShapedView<float const, 2>(h.data(), n, p->rank), WeightMatrix{WeightType::f32, p->b.data(), p->out, p->rank},
         ShapedView<float, 2>(y.data() + qo[b] * p->out, n, p->out), 1.0f);
  }
}

/// The q, k and v updates of one layer (x: the normalized input, [num_tokens][hidden]). At layer 0 it first
/// checks the batch's adapters (one entry per request, each fitting the projections' shapes): it runs before
/// any K/V of the step is written, so a bad batch throws InvalidArgument with the cache untouched.
template <ExecutionSpace S>
void apply_lora_qkv(S const& space, LoraOnSpace<S>& on_space, ForwardBatch const& batch, std::size_t layer,
                    ShapedView<float const, 2> x, ShapedView<float, 2> q, ShapedView<float, 2> k, ShapedView<float, 2> v) {
  if (batch.adapters.empty()) return;
  if (layer == 0) {
    if (batch.adapters.size() != batch.pages.batch_size()) {
      fail<InvalidArgument>("LlamaModel::forward: adapters.size() = ", batch.adapters.size(), " != batch size ",
                            batch.pages.batch_size());
    }
    LoraShape model = {0, x.extent(1), q.extent(1), k.extent(1)};
    for (LoraAdapter const* ad : batch.adapters) {
      if (ad == nullptr) continue;
      model.num_layers = ad->shape().num_layers;  // the model's layer count is checked by the engine
      ad->check_fits(model, "LlamaModel::forward");
    }
    on_space.trim(batch.adapters);
  }
  apply_lora(space, on_space, batch, layer, LoraTarget::q, x, q);
  apply_lora(space, on_space, batch, layer, LoraTarget::k, x, k);
  apply_lora(space, on_space, batch, layer, LoraTarget::v, x, v);
}

}  // namespace piecrust::detail
