#pragma once
// piecrust configuration: version, the host/device function qualifier, feature macros.
// Nothing here depends on any other piecrust header.

#define PIECRUST_VERSION_MAJOR 0
#define PIECRUST_VERSION_MINOR 1
#define PIECRUST_VERSION_PATCH 0
#define PIECRUST_VERSION_STRING "0.1.0"

// Functions that kernels call on both sides of a CUDA/HIP compile.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define PIECRUST_HOST_DEVICE __host__ __device__
#define PIECRUST_DEVICE_COMPILE 1
#else
#define PIECRUST_HOST_DEVICE
#define PIECRUST_DEVICE_COMPILE 0
#endif

namespace piecrust {
inline constexpr int version_major = PIECRUST_VERSION_MAJOR;
inline constexpr int version_minor = PIECRUST_VERSION_MINOR;
inline constexpr int version_patch = PIECRUST_VERSION_PATCH;
}  // namespace piecrust
