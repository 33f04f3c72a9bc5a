#pragma once
// Host implementations of rms_norm and fused_add_rms_norm. Each square is rounded to f32 and summed in
// double, the mean rounded to f32, y = (x * scale) * w: llama.cpp's CPU arithmetic (ggml-cpu ops.cpp,
// rms_norm_f32), so that activations agree with it bit for bit and its 8-bit activation rounding makes the
// same decisions downstream.

#include <cmath>
#include <cstddef>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/rms_norm.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::RmsNorm, Host> {
  static void run(Host const& space, ShapedView<float const, 2> x, ShapedView<float const, 1> weight,
                  ShapedView<float, 2> out, float eps) {
    std::size_t const dim = x.extent(1);
    space.parallel_for(x.extent(0), [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) {
        float const* xr = x.data() + r * dim;
        float* o = out.data() + r * dim;
        double ss = 0.0;
        for (std::size_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i] * xr[i]);
        float const inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
        for (std::size_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * weight.data()[i];
      }
    }, 4);
  }
};

template <>
struct KernelImpl<ops::FusedAddRmsNorm, Host> {
  static void run(Host const& space, ShapedView<float, 2> x, ShapedView<float, 2> residual,
                  ShapedView<float const, 1> weight, float eps) {
    std::size_t const dim = x.extent(1);
    space.parallel_for(x.extent(0), [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) {
        float* xr = x.data() + r * dim;
        float* res = residual.data() + r * dim;
        double ss = 0.0;
        for (std::size_t i = 0; i < dim; ++i) {
          res[i] += xr[i];
          ss += static_cast<double>(res[i] * res[i]);
        }
        float const inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
        for (std::size_t i = 0; i < dim; ++i) xr[i] = res[i] * inv * weight.data()[i];
      }
    }, 4);
  }
};

}  // namespace piecrust
