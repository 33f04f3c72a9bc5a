#pragma once
// The one place where runtime sizes become compile-time kernel parameters (DESIGN.md style rule 4).

#include <cstddef>
#include <string_view>
#include <type_traits>

#include "piecrust/core/error.hpp"

namespace piecrust::detail {

/// Head dimensions with attention kernels: 64 (SmolLM2, Llama-3.2-1B), 128 (Llama 3 8B, Qwen) and 256 (Gemma 3).
/// Calls f(std::integral_constant<std::size_t, D>{}) for head_dim == D; throws Unsupported otherwise.
template <class F>
decltype(auto) dispatch_head_dim(std::string_view op, std::size_t head_dim, F&& f) {
  switch (head_dim) {
    case 64: return f(std::integral_constant<std::size_t, 64>{});
    case 128: return f(std::integral_constant<std::size_t, 128>{});
    case 256: return f(std::integral_constant<std::size_t, 256>{});
    default:
      fail<Unsupported>(op, ": head_dim = ", head_dim, " is not supported (supported: 64, 128, 256)");
  }
}

}  // namespace piecrust::detail
