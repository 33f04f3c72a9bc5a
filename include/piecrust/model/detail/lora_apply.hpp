#pragma once
// apply_lora: the per-request LoRA updates of one model step (see lora_adapter.hpp). Each request of a
// ForwardBatch may name its own adapter (or none), so requests with different adapters share one step: the
// base projection runs once over every token, then y += scale * (x A^T) B^T is added for the tokens of the
// requests whose adapter adapts that projection (the batched-LoRA scheme of S-LoRA, Sheng et al. 2023,
// and Punica, Chen et al. 2023, without their custom kernels). A host loop: LlamaModel runs on
// host-accessible spaces; accumulation in f32.

#include <piecrust/core/error.hpp>
#include <piecrust/exec/shaped_view.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/lora_adapter.hpp>

#include <cstddef>
#include <vector>

namespace piecrust::detail {

/// y[t] += scale * B (A x[t]) for the tokens t of every request whose adapter has a pair for (layer, target).
///   x: [num_tokens][in], y: [num_tokens][out]
inline void apply_lora(ForwardBatch const& batch, std::size_t layer, LoraTarget target, ShapedView<float const, 2> x,
                       ShapedView<float, 2> y) {
  if (batch.adapters.empty()) return;
  auto const& qo = batch.pages.qo_indptr;
  std::vector<float> h;  // [rank] x A^T of one token
  for (std::size_t b = 0; b < batch.adapters.size(); ++b) {
    LoraAdapter const* ad = batch.adapters[b];
    LoraPair const* p = ad == nullptr ? nullptr : ad->pair(layer, target);
    if (p == nullptr) continue;
    std::size_t const in = p->in, out = p->out, r = p->rank;
    h.resize(r);
    for (std::size_t t = qo[b]; t < qo[b + 1]; ++t) {
      float const* xt = x.data() + t * in;
      for (std::size_t i = 0; i < r; ++i) {
        float const* ai = p->a.data() + i * in;
        float s = 0.0f;
        for (std::size_t c = 0; c < in; ++c) s += ai[c] * xt[c];
        h[i] = s;
      }
      float* yt = y.data() + t * out;
      for (std::size_t o = 0; o < out; ++o) {
        float const* bo = p->b.data() + o * r;
        float s = 0.0f;
        for (std::size_t i = 0; i < r; ++i) s += bo[i] * h[i];
        yt[o] += p->scale * s;
      }
    }
  }
}

/// The q, k and v updates of one layer (x: the normalized input, [num_tokens][hidden]). At layer 0 it first
/// checks the batch's adapters (one entry per request, each fitting the projections' shapes): it runs before
/// any K/V of the step is written, so a bad batch throws InvalidArgument with the cache untouched.
inline void apply_lora_qkv(ForwardBatch const& batch, std::size_t layer, ShapedView<float const, 2> x, ShapedView<float, 2> q,
                           ShapedView<float, 2> k, ShapedView<float, 2> v) {
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
  }
  apply_lora(batch, layer, LoraTarget::q, x, q);
  apply_lora(batch, layer, LoraTarget::k, x, k);
  apply_lora(batch, layer, LoraTarget::v, x, v);
}

}  // namespace piecrust::detail
