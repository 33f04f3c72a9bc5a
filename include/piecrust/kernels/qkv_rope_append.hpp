#pragma once
// qkv_rope_append: a Llama layer's attention prologue as one op. The projections' biases are added to q, k and
// v, q and k are rotated (rope.hpp), and k and v are written to the KV pool (append_kv.hpp). Defined as that
// composition, which is what a space without a fused kernel runs; a space with one (Cuda) reads q, k and v
// once and writes q and the pool once, saving the f32 round trips of the separate ops.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/add_bias.hpp"
#include "piecrust/kernels/append_kv.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/paged_kv.hpp"
#include "piecrust/kernels/rope.hpp"

namespace piecrust {
namespace ops {
struct QkvRopeAppend {};
}  // namespace ops

/// The q, k and v biases (the space's memory): all three set, or all three empty (no bias).
struct QkvBias {
  ShapedView<float const, 1> q;  // [heads * head_dim]
  ShapedView<float const, 1> k;  // [kv_heads * head_dim]
  ShapedView<float const, 1> v;  // [kv_heads * head_dim]
  [[nodiscard]] bool empty() const noexcept { return q.data() == nullptr; }
};

/// q := rope(q + bias.q) in place; the pool's slots[t] := (rope(k + bias.k), v + bias.v) of token t.
///   q [tokens][heads][head_dim], k and v [tokens][kv_heads][head_dim], positions and slots [tokens]
/// k and v are inputs only in meaning: their contents afterwards are unspecified (the composition works in
/// place, a fused kernel does not write them). Throws what rope, append_kv and add_bias throw, before
/// anything is written.
template <ExecutionSpace S, class T>
  requires KvElement<T>
void qkv_rope_append(S const& space, ShapedView<float, 3> q, ShapedView<float, 3> k, ShapedView<float, 3> v,
                     QkvBias const& bias, std::span<std::uint32_t const> positions, RopeParams const& params,
                     PagedKv<T> kv, std::span<std::uint32_t const> slots) {
  constexpr char const* op = "qkv_rope_append";
  std::size_t const rotary_dim = detail::check_rope(op, q.extent(0), q.extent(2), positions, params);
  detail::check_append_kv(op, kv, k, v, slots);
  detail::check_extent(op, "q.extent(0) (tokens)", q.extent(0), k.extent(0));
  detail::check_extent(op, "q.extent(2) (head_dim)", q.extent(2), k.extent(2));
  if (!bias.empty()) {
    detail::check_extent(op, "bias.q.extent(0)", bias.q.extent(0), q.extent(1) * q.extent(2));
    detail::check_extent(op, "bias.k.extent(0)", bias.k.extent(0), k.extent(1) * k.extent(2));
    detail::check_extent(op, "bias.v.extent(0)", bias.v.extent(0), v.extent(1) * v.extent(2));
  } else if (bias.k.data() != nullptr || bias.v.data() != nullptr) {
    detail::fail<InvalidArgument>(op, ": bias.q is empty but bias.k or bias.v is not (give all three or none)");
  }
  if constexpr (HasKernel<ops::QkvRopeAppend, S>) {
    KernelImpl<ops::QkvRopeAppend, S>::run(space, q, k, v, bias, positions, params, rotary_dim, kv, slots);
  } else {
    if (!bias.empty() && q.extent(0) != 0) {
      auto rows = [](ShapedView<float, 3> x) { return ShapedView<float, 2>(x.data(), x.extent(0), x.extent(1) * x.extent(2)); };
      add_bias(space, rows(q), bias.q);
      add_bias(space, rows(k), bias.k);
      add_bias(space, rows(v), bias.v);
    }
    rope(space, q, positions, params);
    rope(space, k, positions, params);
    append_kv(space, kv, ShapedView<float const, 3>(k.data(), k.extent(0), k.extent(1), k.extent(2)),
              ShapedView<float const, 3>(v.data(), v.extent(0), v.extent(1), v.extent(2)), slots);
  }
}

}  // namespace piecrust
