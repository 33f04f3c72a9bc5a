// The GPU tests (tests/gpu/main.cu, test_kernels.cu, test_attention.cu, test_quant_types.cu) compiled as
// plain C++ against the host emulation of the CUDA dialect (cuda_runtime.h in this folder), so that the
// kernels' logic runs, and is compared with the host backend, in every build, without a GPU: every kernel,
// the attention decode kernel (the tensor-core prefill kernel is PTX: GPU only) and LlamaModel<Cuda>. gemm
// takes the direct kernel (no cuBLAS to emulate).
// The build defines __CUDACC__ (so piecrust/config.hpp selects the device code path) and
// PIECRUST_GPU_EMULATION, and puts this folder first on the include path.
#include "../main.cu"
#include "../test_attention.cu"
#include "../test_kernels.cu"
#include "../test_quant_types.cu"
