// Compiles the shared CUDA/HIP dialect with hipcc (no AMD GPU is needed to compile).
#include <piecrust/backends/hip/runtime.hpp>

namespace {
__global__ void scale(float* x, float s, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}
}  // namespace

void piecrust_hip_compile_check_launch(float* x, int n) {
  hipLaunchKernelGGL(scale, dim3((n + 255) / 256), dim3(256), 0, 0, x, 2.0f, n);
}
