#pragma once
// Everything piecrust offers on the host: core, MaskInfo, execution spaces, kernels, the host backend,
// models and the runtime. GPU backends have their own headers (piecrust/backends/cuda/...,
// piecrust/backends/hip/...).
#include <piecrust/core.hpp>
#include <piecrust/mask_info.hpp>
#include <piecrust/exec.hpp>
#include <piecrust/kernels.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>
