#pragma once
// ejKernel's MaskInfo for piecrust: the class (piecrust::MaskInfo), ejKernel's module functions
// (piecrust::maskinfo::segment_ids_to_mask, mask_to_segment_ids, ...), the typed alternatives and the
// conversions to piecrust's own mask types. See docs/maskinfo.md.

#include "piecrust/core/mask_info/conversions.hpp"
#include "piecrust/core/mask_info/debug.hpp"
#include "piecrust/core/mask_info/dtype.hpp"
#include "piecrust/core/mask_info/mask_info_class.hpp"
#include "piecrust/core/mask_info/options.hpp"
#include "piecrust/core/mask_info/sharding.hpp"
#include "piecrust/core/mask_info/tensor.hpp"
#include "piecrust/core/mask_info/visualize.hpp"
#include "piecrust/core/mask_info/piecrust_types.hpp"
#include "piecrust/core/mask_info/typed.hpp"
