// The GPU tests (tests/gpu/main.cu + test_kernels.cu) compiled as plain C++ against the host emulation of
// the CUDA dialect (cuda_runtime.h in this folder), so that the kernels' logic runs, and is compared with
// the host backend, in every build, without a GPU. The gemm test is left out (cuBLAS has no emulation).
// The build defines __CUDACC__ (so piecrust/config.hpp selects the device code path) and
// PIECRUST_GPU_EMULATION, and puts this folder first on the include path.
#include "../main.cu"
#include "../test_kernels.cu"
