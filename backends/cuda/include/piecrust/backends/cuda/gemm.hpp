#pragma once
// Cuda implementation of gemm, y = beta * y + x * W^T, through cuBLAS on CUDA. On HIP (Debian's HIP 5.2
// toolchain ships no hipBLAS) the direct kernel of gemv.hpp serves every m (at the end of this file).
//  * f32 weights: cublasSgemm (f32 in, f32 accumulate; TF32 is not enabled, so results track the host).
//  * f16 / bf16 weights: x rounded to the weights' 16-bit type, cublasGemmEx with f32 accumulation and
//    f32 output (CUBLAS_COMPUTE_32F), the standard mixed-precision GEMM of bf16 inference.
//  * quantized weights, m <= gemv_max_rows: the direct kernel (gemv.hpp) that reads the quantized weights
//    once (decode is bound by weight bandwidth).
//  * quantized weights, larger m: panels of W dequantized to bf16 in the space's scratch, then
//    cublasGemmEx per panel (prefill is bound by tensor-core FLOPs: 2 m n k / ~990 TFLOP/s dense bf16).
// Row-major y[m][n] = x[m][k] W[n][k]^T is the column-major product Y^T = W^T(op T) X^T, so W is the
// "A" operand with op T and leading dimension k, x the "B" operand with op N, y column-major [n][m].
// The tests' host emulation of the CUDA dialect takes the HIP path (no cuBLAS to emulate).

#include "piecrust/config.hpp"

#if PIECRUST_DEVICE_COMPILE && !defined(__HIPCC__) && !defined(PIECRUST_GPU_EMULATION)
#include <cublas_v2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/detail/quant.hpp"
#include "piecrust/backends/cuda/embedding.hpp"
#include "piecrust/backends/cuda/gemv.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/gemm.hpp"

namespace piecrust {
namespace gpu::detail {

inline void check_cublas(cublasStatus_t s, char const* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    piecrust::detail::fail<Error>("cuBLAS call ", what, " failed with status ", static_cast<int>(s));
}

/// One cuBLAS handle per (host thread, device), created on first use: a handle is not safe to share
/// between threads, and creating one costs milliseconds. Its stream is set on every call.
inline cublasHandle_t cublas_handle(int device) {
  struct Handles {
    cublasHandle_t h[64] = {};
    Handles() = default;
    Handles(Handles const&) = delete;
    Handles& operator=(Handles const&) = delete;
    ~Handles() {
      for (cublasHandle_t x : h) {
        if (x != nullptr) (void)cublasDestroy(x);
      }
    }
  };
  thread_local Handles handles;
  if (device < 0 || device >= 64)
    piecrust::detail::fail<Unsupported>("gemm: device = ", device, " (at most 64 devices)");
  if (handles.h[device] == nullptr) check_cublas(cublasCreate(&handles.h[device]), "cublasCreate");
  return handles.h[device];
}

template <class T>
__global__ void to_16bit_kernel(float const* x, T* out, std::size_t count) {
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    out[i] = from_float<T>(x[i]);
  }
}

/// Bytes of bf16 weights dequantized per panel: large enough for full tensor-core tiles, small enough
/// to keep the scratch arena modest.
inline constexpr std::size_t gemm_panel_bytes = std::size_t{64} << 20;

}  // namespace gpu::detail

/// x, y and W.data are device memory.
template <>
struct KernelImpl<ops::Gemm, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                  float beta) {
    std::size_t const m = x.extent(0);
    std::size_t const k = w.cols;
    std::size_t const n = w.rows;
    if (m == 0 || n == 0) return;
    gpu::DeviceGuard guard(space.device());
    if (k == 0) {  // an empty sum: y = beta * y (beta = 0 clears, NaN included)
      if (beta == 0.0f)
        gpu::memset_async(y.data(), 0, m * n * sizeof(float), space.stream());
      else
        gemm_f32_scale(space, y.data(), m * n, beta);
      return;
    }
    check_int("m", m);
    check_int("n", n);
    check_int("k", k);
    cublasHandle_t const h = gpu::detail::cublas_handle(space.device());
    gpu::detail::check_cublas(cublasSetStream(h, space.stream()), "cublasSetStream");
    int const im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
    float const alpha = 1.0f;
    switch (w.type) {
      case WeightType::f32:
        gpu::detail::check_cublas(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, in, im, ik, &alpha,
                                              static_cast<float const*>(w.data), ik, x.data(), ik, &beta, y.data(), in),
                                  "cublasSgemm");
        return;
      case WeightType::f16:
      case WeightType::bf16: {
        bool const bf = w.type == WeightType::bf16;
        gpu::Scratch& scratch = space.scratch();
        scratch.begin();
        auto const x16 = scratch.workspace<std::uint16_t>(m * k);  // [m][k]
        scratch.commit();
        convert(space, x.data(), scratch.get(x16), m * k, bf);
        gemm_ex(h, bf, w.data, scratch.get(x16), y.data(), n, m, k, n, beta);
        return;
      }
      case WeightType::q4_0:
      case WeightType::q4_1:
      case WeightType::q5_0:
      case WeightType::q5_1:
      case WeightType::q8_0:
      case WeightType::q2_k:
      case WeightType::q3_k:
      case WeightType::q4_k:
      case WeightType::q5_k:
      case WeightType::q6_k:
      case WeightType::iq4_nl:
      case WeightType::iq4_xs: {
        if (m <= gpu::detail::gemv_max_rows) {
          gpu::detail::launch_gemv(space, x, w, y, beta);
          return;
        }
        std::size_t const panel_rows = std::clamp<std::size_t>(gpu::detail::gemm_panel_bytes / (2 * k), 1, n);
        gpu::Scratch& scratch = space.scratch();
        scratch.begin();
        auto const x16 = scratch.workspace<std::uint16_t>(m * k);        // [m][k] bf16
        auto const panel = scratch.workspace<BFloat16>(panel_rows * k);  // [panel_rows][k] bf16
        scratch.commit();
        convert(space, x.data(), scratch.get(x16), m * k, true);
        for (std::size_t o0 = 0; o0 < n; o0 += panel_rows) {
          std::size_t const rows = std::min(panel_rows, n - o0);
          gpu::detail::launch_gather<BFloat16>(space, w, nullptr, o0, rows, scratch.get(panel));
          gemm_ex(h, true, scratch.get(panel), scratch.get(x16), y.data() + o0, rows, m, k, n, beta);
        }
        return;
      }
    }
  }

 private:
  static void check_int(char const* what, std::size_t v) {
    if (v > 0x7fffffffu) detail::fail<Unsupported>("gemm: ", what, " = ", v, " exceeds cuBLAS's int range");
  }
  static void convert(Cuda const& space, float const* x, std::uint16_t* out, std::size_t count, bool bf) {
    unsigned const blocks = gpu::detail::elementwise_blocks(count, 256);
    if (bf) {
      PIECRUST_GPU_LAUNCH(gpu::detail::to_16bit_kernel<BFloat16>, blocks, 256, 0, space.stream(), x,
                          reinterpret_cast<BFloat16*>(out), count);
    } else {
      PIECRUST_GPU_LAUNCH(gpu::detail::to_16bit_kernel<Half>, blocks, 256, 0, space.stream(), x,
                          reinterpret_cast<Half*>(out), count);
    }
    gpu::check_launch("to_16bit_kernel");
  }
  // y (column-major [n_rows of W][m], leading dimension ldy) = beta * y + W x^T.
  static void gemm_ex(cublasHandle_t h, bool bf, void const* w, void const* x16, float* y, std::size_t rows,
                      std::size_t m, std::size_t k, std::size_t ldy, float beta) {
    float const alpha = 1.0f;
    cudaDataType_t const t = bf ? CUDA_R_16BF : CUDA_R_16F;
    gpu::detail::check_cublas(
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(m), static_cast<int>(k),
                     &alpha, w, t, static_cast<int>(k), x16, t, static_cast<int>(k), &beta, y, CUDA_R_32F,
                     static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  }
  static void gemm_f32_scale(Cuda const& space, float* y, std::size_t count, float beta) {
    cublasHandle_t const h = gpu::detail::cublas_handle(space.device());
    gpu::detail::check_cublas(cublasSetStream(h, space.stream()), "cublasSetStream");
    check_int("m * n", count);
    gpu::detail::check_cublas(cublasSscal(h, static_cast<int>(count), &beta, y, 1), "cublasSscal");
  }
};

}  // namespace piecrust
#elif PIECRUST_DEVICE_COMPILE && (defined(__HIPCC__) || defined(PIECRUST_GPU_EMULATION))
#include <algorithm>
#include <cstddef>

#include "piecrust/backends/cuda/gemv.hpp"
#include "piecrust/kernels/gemm.hpp"

namespace piecrust {

/// HIP (no BLAS in Debian's HIP 5.2 toolchain) and the tests' host emulation (no cuBLAS): the direct kernel over chunks of gemv_max_rows rows of x, so
/// each chunk reads W once. Correct for every m and every weight type; prefill is not at the FLOP floor.
template <>
struct KernelImpl<ops::Gemm, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                  float beta) {
    std::size_t const m = x.extent(0), k = w.cols, n = w.rows;
    if (m == 0 || n == 0) return;
    gpu::DeviceGuard guard(space.device());
    for (std::size_t i0 = 0; i0 < m; i0 += gpu::detail::gemv_max_rows) {
      std::size_t const rows = std::min(gpu::detail::gemv_max_rows, m - i0);
      gpu::detail::launch_gemv(space, ShapedView<float const, 2>(x.data() + i0 * k, rows, k), w,
                               ShapedView<float, 2>(y.data() + i0 * n, rows, n), beta);
    }
  }
};

}  // namespace piecrust
#endif
