#pragma once
// GgufTensorInfo: the name, shape, element type and data location of one tensor in a GGUF file.

#include <piecrust/model/ggml_type.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace piecrust {

struct GgufTensorInfo {
  std::string name;
  std::uint32_t n_dims = 0;
  /// ggml order: dims[0] is the fastest-varying (the row length); unused dims are 1.
  /// A 2-D weight of `out` rows by `in` columns has dims = {in, out, 1, 1}.
  std::array<std::uint64_t, 4> dims{1, 1, 1, 1};
  GgmlType type = GgmlType::f32;
  /// Byte offset relative to the start of the data section (a multiple of the file's alignment).
  std::uint64_t offset = 0;
  /// Total bytes of the tensor's data.
  std::uint64_t size_bytes = 0;

  // For an info from GgufFile these products cannot overflow: the reader checked every one of them.
  [[nodiscard]] std::uint64_t num_elements() const noexcept { return dims[0] * dims[1] * dims[2] * dims[3]; }
  /// Number of rows of length dims[0].
  [[nodiscard]] std::uint64_t num_rows() const noexcept { return dims[1] * dims[2] * dims[3]; }
  [[nodiscard]] std::uint64_t row_bytes() const noexcept {
    auto const t = ggml_type_traits(type);
    return dims[0] / t.block_elems * t.block_bytes;
  }
};

}  // namespace piecrust
