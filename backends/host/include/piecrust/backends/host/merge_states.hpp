#pragma once
// Host implementation of merge_states.

#include <cmath>
#include <cstddef>
#include <limits>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/merge_states.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::MergeStates, Host> {
  static void run(Host const& space, ShapedView<float const, 4> v, ShapedView<float const, 3> s,
                  ShapedView<float, 3> v_out, ShapedView<float, 2> s_out) {
    std::size_t const states = v.extent(1);
    std::size_t const heads = v.extent(2);
    std::size_t const head_dim = v.extent(3);
    space.parallel_for(v.extent(0) * heads, [&](std::size_t begin, std::size_t end) {
      for (std::size_t item = begin; item < end; ++item) {
        std::size_t const t = item / heads;
        std::size_t const h = item % heads;
        float m = -std::numeric_limits<float>::infinity();
        for (std::size_t k = 0; k < states; ++k) m = std::fmax(m, s(t, k, h));
        float* o = &v_out(t, h, std::size_t{0});
        for (std::size_t d = 0; d < head_dim; ++d) o[d] = 0.0f;
        if (m == -std::numeric_limits<float>::infinity()) {
          s_out(t, h) = m;
          continue;
        }
        float sum = 0.0f;
        for (std::size_t k = 0; k < states; ++k) {
          float const w = std::exp(s(t, k, h) - m);  // 0 for a state with lse = -inf
          sum += w;
          float const* src = &v(t, k, h, std::size_t{0});
          for (std::size_t d = 0; d < head_dim; ++d) o[d] += w * src[d];
        }
        for (std::size_t d = 0; d < head_dim; ++d) o[d] /= sum;
        s_out(t, h) = m + std::log(sum);
      }
    });
  }
};

}  // namespace piecrust
