#pragma once
// Cuda implementation of gemm, y = beta * y + x * W^T, through cuBLAS (CUDA only: Debian's HIP 5.2
// toolchain ships no hipBLAS, so this header is not part of the HIP compile check).
//  * f32 weights: cublasSgemm (f32 in, f32 accumulate; TF32 is not enabled, so results track the host).
//  * f16 / bf16 weights: x rounded to the weights' 16-bit type, cublasGemmEx with f32 accumulation and
//    f32 output (CUBLAS_COMPUTE_32F), the standard mixed-precision GEMM of bf16 inference.
//  * q8_0 / q4_1 weights, m <= gemv_max_rows: a direct kernel that reads the quantized weights once
//    (decode is bound by weight bandwidth: the floor is size_bytes(W) / bandwidth, e.g. a 4096 x 4096
//    Q4_1 matrix, 10.5 MB, ~3 us at 3.35 TB/s).
//  * q8_0 / q4_1 weights, larger m: panels of W dequantized to bf16 in the space's scratch, then
//    cublasGemmEx per panel (prefill is bound by tensor-core FLOPs: 2 m n k / ~990 TFLOP/s dense bf16).
// Row-major y[m][n] = x[m][k] W[n][k]^T is the column-major product Y^T = W^T(op T) X^T, so W is the
// "A" operand with op T and leading dimension k, x the "B" operand with op N, y column-major [n][m].

#include "piecrust/config.hpp"

#if PIECRUST_DEVICE_COMPILE && !defined(__HIPCC__) && !defined(PIECRUST_GPU_EMULATION)
#include <cublas_v2.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/detail/quant.hpp"
#include "piecrust/backends/cuda/embedding.hpp"
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

/// Rows of x the direct quantized kernel handles (decode and small speculative batches).
inline constexpr std::size_t gemv_max_rows = 8;
inline constexpr int gemv_threads = 256;

/// y[i][o] = beta * y[i][o] + sum_c x[i][c] * W[o][c] for i < m <= gemv_max_rows; one warp per output o.
/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(gemv_threads)
    gemv_quant_kernel(WeightType type, unsigned char const* w, std::size_t row_bytes, std::size_t n, std::size_t k,
                      float const* x, std::size_t m, float* y, float beta) {
  int const lane = static_cast<int>(threadIdx.x) % warp_size;
  std::size_t const o = static_cast<std::size_t>(blockIdx.x) * (gemv_threads / warp_size) + threadIdx.x / warp_size;
  if (o >= n) return;
  unsigned char const* row = w + o * row_bytes;
  float acc[gemv_max_rows] = {};
  for (std::size_t c = static_cast<std::size_t>(lane); c < k; c += warp_size) {
    float const wc = decode(type, row, c);
    for (std::size_t i = 0; i < m; ++i) acc[i] += x[i * k + c] * wc;
  }
  for (std::size_t i = 0; i < m; ++i) {
    float const s = warp_reduce(acc[i], Sum{});
    if (lane == 0) {
      float& yo = y[i * n + o];
      yo = beta == 0.0f ? s : beta * yo + s;
    }
  }
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
      case WeightType::q8_0:
      case WeightType::q4_1: {
        if (m <= gpu::detail::gemv_max_rows) {
          constexpr unsigned warps = gpu::detail::gemv_threads / gpu::warp_size;
          PIECRUST_GPU_LAUNCH(gpu::detail::gemv_quant_kernel<>, static_cast<unsigned>((n + warps - 1) / warps),
                              gpu::detail::gemv_threads, 0, space.stream(), w.type,
                              static_cast<unsigned char const*>(w.data), w.row_bytes(), n, k, x.data(), m, y.data(),
                              beta);
          gpu::check_launch("gemv_quant_kernel");
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
#endif
