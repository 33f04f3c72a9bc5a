// Compiles every public CUDA-backend header with nvcc, and one kernel in the shared dialect.
#include <piecrust/backends/cuda.hpp>
#include <piecrust/backends/cuda/copy.hpp>
#include <piecrust/backends/cuda/memory.hpp>
#include <piecrust/backends/cuda/runtime.hpp>
#include <piecrust/backends/cuda/scratch.hpp>
#include <piecrust/backends/cuda/space.hpp>

namespace {
__global__ void scale(float* x, float s, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}
static_assert(piecrust::gpu::warp_size == 32);
}  // namespace

void piecrust_cuda_compile_check_launch(float* x, int n) { scale<<<(n + 255) / 256, 256>>>(x, 2.0f, n); }
