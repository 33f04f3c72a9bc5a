#pragma once
// Device decoding of GGUF weight rows (every WeightType), one element at a time, by the one definition of
// each block layout (kernels/quant_blocks.hpp: its multiply and add are rounded separately on the device too).

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust::gpu::detail {

/// Element c of a row of `type` stored at `row`.
__device__ __forceinline__ float decode(WeightType type, unsigned char const* row, std::size_t c) {
  return quant::dequantize_element(type, row, c);
}

}  // namespace piecrust::gpu::detail
#endif
