#pragma once
// Host implementation of the llama.cpp-arithmetic ops (detail/llama_cpp_arithmetic.hpp has the arithmetic).

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/host/detail/llama_cpp_arithmetic.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/llama_cpp_ops.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::LlamaCppRope, Host> {
  static void run(Host const&, ShapedView<float, 3> x, std::span<std::uint32_t const> positions, RopeParams const& params) {
    detail::llama_cpp::rope(x, positions, params);
  }
};

template <>
struct KernelImpl<ops::LlamaCppAttention, Host> {
  // One token per task: llama.cpp's per-token loop order is what is reproduced, not its threading.
  static void run(Host const& space, ShapedView<float const, 3> q, PagedKv<float const> kv, PagedBatch const& batch,
                  AttentionSelection const& selection, ShapedView<float, 3> out) {
    detail::llama_cpp::attention([&](std::size_t n, auto&& f) { space.parallel_for(n, f, 1); }, q, kv, batch, selection, out);
  }
};

template <>
struct KernelImpl<ops::LlamaCppSwiglu, Host> {
  static void run(Host const&, ShapedView<float const, 2> gate, ShapedView<float const, 2> up, ShapedView<float, 2> out) {
    detail::llama_cpp::swiglu(std::span<float const>(gate.data(), gate.size()), std::span<float const>(up.data(), up.size()),
                              std::span<float>(out.data(), out.size()));
  }
};

}  // namespace piecrust
