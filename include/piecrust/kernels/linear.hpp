#pragma once
// linear: y = beta * y + x W^T over a weight loaded into a space once (load_linear), so that each space keeps
// its weights in the layout its matmul wants: the host keeps the GGUF bytes (and, for Q4_1 / Q8_0, an
// interleaved copy for its integer path), a GPU keeps bf16 for its tensor cores. A space without its own
// ops::Linear gets the generic form: the GGUF bytes in its memory and its gemm.
//
// KernelImpl<ops::Linear, S> (optional) provides
//   using weight_type = ...;                                  // has a member `WeightMatrix matrix` (shape;
//                                                             // data in the space's memory or host memory)
//   static weight_type load(S const&, WeightMatrix const& host_weights, LinearOptions const&);
//   static void run(S const&, ShapedView<float const, 2> x, weight_type const&, ShapedView<float, 2> y, float beta);
//   static void run_many(S const&, ShapedView<float const, 2> x, std::span<LinearProduct<weight_type> const>);

#include <cstddef>
#include <span>
#include <type_traits>

#include "piecrust/exec/buffer.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/memory_of.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/gemm.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust {
namespace ops {
struct Linear {};
}  // namespace ops

/// How a space may transform weights at load time. Spaces ignore what does not apply to them.
struct LinearOptions {
  /// Host: round activations to 8-bit blocks before quantized weights (llama.cpp's CPU arithmetic).
  bool round_activations = true;
  /// Host, with round_activations: also keep Q4_1 / Q8_0 rows interleaved in groups of 8 (a copy of the
  /// weights; a faster matmul with the same bits as the GGUF-order one).
  bool interleave = true;
};

/// The generic loaded weight: the GGUF bytes in the space's memory (none copied for a host-accessible
/// space, whose kernels read the caller's bytes, which must then outlive the weight).
template <class Mem>
struct SpaceWeight {
  Buffer<std::byte, Mem> bytes;  // [rows][row_bytes] GGUF order, empty when `matrix` reads host bytes
  WeightMatrix matrix;           // the shape; data in the space's memory
};

/// One product of a shared input: y = beta * y + x W^T.
template <class W>
struct LinearProduct {
  W const* w = nullptr;
  ShapedView<float, 2> y;
  float beta = 0.0f;
};

namespace detail {
template <class S>
concept HasOwnLinear = requires { typename KernelImpl<ops::Linear, S>::weight_type; };
template <class S>
struct LinearWeightOf {
  using type = SpaceWeight<typename S::memory_space>;
};
template <class S>
  requires HasOwnLinear<S>
struct LinearWeightOf<S> {
  using type = typename KernelImpl<ops::Linear, S>::weight_type;
};
}  // namespace detail

/// The type of a weight loaded into space S.
template <ExecutionSpace S>
using LinearWeight = typename detail::LinearWeightOf<S>::type;

/// Loads host GGUF weights `w` into the space (validated first).
template <ExecutionSpace S>
[[nodiscard]] LinearWeight<S> load_linear(S const& space, WeightMatrix const& w, LinearOptions const& options = {}) {
  w.validate("load_linear");
  if constexpr (detail::HasOwnLinear<S>) {
    return KernelImpl<ops::Linear, S>::load(space, w, options);
  } else if constexpr (host_accessible_space<S>) {
    return LinearWeight<S>{{}, w};
  } else {
    LinearWeight<S> out{Buffer<std::byte, typename S::memory_space>(w.size_bytes(), memory_of(space)), w};
    copy_to_space(space, std::span<std::byte>(out.bytes.data(), out.bytes.size()),
                  std::span<std::byte const>(static_cast<std::byte const*>(w.data), w.size_bytes()));
    out.matrix.data = out.bytes.data();
    return out;
  }
}

namespace detail {
inline void check_linear(ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y) {
  check_extent("linear", "x.extent(1) (k)", x.extent(1), w.cols);
  check_extent("linear", "y.extent(0) (m)", y.extent(0), x.extent(0));
  check_extent("linear", "y.extent(1) (n)", y.extent(1), w.rows);
}
}  // namespace detail

/// y [m][n] = beta * y + x [m][k] W [n][k]^T; beta = 0 ignores y's old contents (NaN included).
template <ExecutionSpace S>
void linear(S const& space, ShapedView<float const, 2> x, LinearWeight<S> const& w, ShapedView<float, 2> y, float beta = 0.0f) {
  detail::check_linear(x, w.matrix, y);
  if constexpr (detail::HasOwnLinear<S>) {
    KernelImpl<ops::Linear, S>::run(space, x, w, y, beta);
  } else {
    gemm(space, x, w.matrix, y, beta);
  }
}

/// Several products of the same input (Q, K, V; gate, up): a space may fuse them (one activation
/// quantization, one parallel loop).
template <ExecutionSpace S>
void linear_many(S const& space, ShapedView<float const, 2> x, std::span<LinearProduct<LinearWeight<S>> const> products) {
  for (auto const& p : products) {
    if (p.w == nullptr) detail::fail<InvalidArgument>("linear_many: a product has no weight");
    detail::check_linear(x, p.w->matrix, p.y);
  }
  if constexpr (requires { KernelImpl<ops::Linear, S>::run_many(space, x, products); }) {
    KernelImpl<ops::Linear, S>::run_many(space, x, products);
  } else {
    for (auto const& p : products) linear(space, x, *p.w, p.y, p.beta);
  }
}

}  // namespace piecrust
