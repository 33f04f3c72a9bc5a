#pragma once
// Host implementation of rope: per token, cos/sin of every pair computed once (angles in double, so
// positions up to 2^24 and beyond keep full f32 accuracy) and applied to every head.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/rope.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Rope, Host> {
  static void run(Host const& space, ShapedView<float, 3> x, std::span<std::uint32_t const> positions,
                  RopeParams const& params, std::size_t rotary_dim) {
    std::vector<double> const inv_freq = detail::rope_inv_freq(params, rotary_dim);  // [rotary_dim / 2]
    std::size_t const heads = x.extent(1);
    std::size_t const head_dim = x.extent(2);
    std::size_t const half = rotary_dim / 2;
    space.parallel_for(x.extent(0), [&](std::size_t begin, std::size_t end) {
      std::vector<float> cs(2 * half);  // [2][rotary_dim / 2] cos then sin
      for (std::size_t t = begin; t < end; ++t) {
        for (std::size_t i = 0; i < half; ++i) {
          double const angle = static_cast<double>(positions[t]) * inv_freq[i];
          cs[i] = static_cast<float>(std::cos(angle));
          cs[half + i] = static_cast<float>(std::sin(angle));
        }
        for (std::size_t h = 0; h < heads; ++h) {
          float* v = x.data() + (t * heads + h) * head_dim;
          for (std::size_t i = 0; i < half; ++i) {
            std::size_t const a = params.style == RopeStyle::adjacent_pairs ? 2 * i : i;
            std::size_t const b = params.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
            float const x0 = v[a];
            float const x1 = v[b];
            v[a] = x0 * cs[i] - x1 * cs[half + i];
            v[b] = x0 * cs[half + i] + x1 * cs[i];
          }
        }
      }
    });
  }
};

}  // namespace piecrust
