#pragma once
// RoPE, attention and SwiGLU with llama.cpp's exact CPU arithmetic, as optional ops: a space that has them
// (the host backend) lets a model reproduce llama.cpp's logits bit for bit (LlamaModelOptions::
// llama_cpp_attention); piecrust's own kernels are the default everywhere. Shapes as rope, paged_attention
// (f32 KV, causal or masked, no soft-cap) and swiglu.

#include <cstdint>
#include <span>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/paged_kv.hpp"
#include "piecrust/kernels/rope.hpp"

namespace piecrust {
namespace ops {
struct LlamaCppRope {};
struct LlamaCppAttention {};
struct LlamaCppSwiglu {};
}  // namespace ops

/// Whether space S can run a model with llama.cpp's exact arithmetic.
template <class S>
inline constexpr bool has_llama_cpp_arithmetic =
    HasKernel<ops::LlamaCppRope, S> && HasKernel<ops::LlamaCppAttention, S> && HasKernel<ops::LlamaCppSwiglu, S>;

///   x [tokens][heads][head_dim], positions [tokens] (host)
template <ExecutionSpace S>
  requires HasKernel<ops::LlamaCppRope, S>
void llama_cpp_rope(S const& space, ShapedView<float, 3> x, std::span<std::uint32_t const> positions, RopeParams const& params) {
  detail::check_extent("llama_cpp_rope", "positions.size() (tokens)", positions.size(), x.extent(0));
  KernelImpl<ops::LlamaCppRope, S>::run(space, x, positions, params);
}

///   q [tokens][qo_heads][head_dim], out [tokens][qo_heads][head_dim]; kv, batch, selection as paged_attention
template <ExecutionSpace S>
  requires HasKernel<ops::LlamaCppAttention, S>
void llama_cpp_attention(S const& space, ShapedView<float const, 3> q, PagedKv<float const> kv, PagedBatch const& batch,
                         AttentionSelection const& selection, ShapedView<float, 3> out) {
  kv.validate("llama_cpp_attention");
  detail::validate_paged_attention(q.extent(0), q.extent(1), q.extent(2), kv.num_kv_heads, kv.head_dim, kv.num_pages,
                                   kv.page_size, batch, selection);
  for (std::size_t d = 0; d < 3; ++d) detail::check_extent("llama_cpp_attention", "out.extent(d)", out.extent(d), q.extent(d));
  KernelImpl<ops::LlamaCppAttention, S>::run(space, q, kv, batch, selection, out);
}

///   gate, up, out [rows][n]
template <ExecutionSpace S>
  requires HasKernel<ops::LlamaCppSwiglu, S>
void llama_cpp_swiglu(S const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up, ShapedView<float, 2> out) {
  for (std::size_t d = 0; d < 2; ++d) {
    detail::check_extent("llama_cpp_swiglu", "up.extent(d)", up.extent(d), gate.extent(d));
    detail::check_extent("llama_cpp_swiglu", "out.extent(d)", out.extent(d), gate.extent(d));
  }
  KernelImpl<ops::LlamaCppSwiglu, S>::run(space, gate, up, out);
}

}  // namespace piecrust
