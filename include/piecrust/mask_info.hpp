#pragma once
// piecrust's mask_info layer: ejKernel's MaskInfo (ejkernel.types.mask) as a small data class,
// piecrust::MaskInfo, and free functions in piecrust::maskinfo: ejKernel's module functions
// (segment_ids_to_mask, mask_to_segment_ids, ...), MaskInfo's factories, lazy getters, summaries,
// transforms, visualize and sharding under their upstream names, the typed alternatives, and the
// conversions to piecrust's own mask types. Host-only; uses only config and core. See docs/maskinfo.md.

#include <piecrust/mask_info/axis_name.hpp>
#include <piecrust/mask_info/conversions.hpp>
#include <piecrust/mask_info/debug.hpp>
#include <piecrust/mask_info/dtype.hpp>
#include <piecrust/mask_info/factories.hpp>
#include <piecrust/mask_info/mask_info.hpp>
#include <piecrust/mask_info/materialize.hpp>
#include <piecrust/mask_info/options.hpp>
#include <piecrust/mask_info/piecrust_types.hpp>
#include <piecrust/mask_info/replace.hpp>
#include <piecrust/mask_info/representations.hpp>
#include <piecrust/mask_info/sharding.hpp>
#include <piecrust/mask_info/summaries.hpp>
#include <piecrust/mask_info/tensor.hpp>
#include <piecrust/mask_info/transforms.hpp>
#include <piecrust/mask_info/typed.hpp>
#include <piecrust/mask_info/visualize.hpp>
