#pragma once
// piecrust's Kokkos adapter: any Kokkos execution space (Serial, OpenMP, Threads, Cuda, HIP, ...) as a
// piecrust ExecutionSpace, with every op the model and runtime use, written once on Kokkos patterns
// (RangePolicy, MDRangePolicy, TeamPolicy with team scratch) over unmanaged Views of piecrust's pointers:
//   memory      copy (to / from / within the space's memory), zero_fill; hence KvCache and the KV page ops
//   model       embedding, gemm (f32, f16, bf16, q8_0, q4_1 weights), dequantize, rms_norm,
//               fused_add_rms_norm, rope, add_bias, swiglu, geglu, append_kv
//   attention   plan_attention, paged_attention (masks, page-trim, GQA, soft-cap, f32 / bf16 KV), merge_states
//   logits      sample and the probes (per-row host code; device memory is staged through the host)
// Host spans of the interfaces (ids, positions, slots, page tables, masks) are staged into the space by
// each op. Supported: Kokkos 3.4 and later; tested with Debian's Trilinos 13.2 Kokkos 3.4.1 on the Serial
// space only. Builds of Kokkos for Cuda or HIP compile but are untested (see space.hpp for the flags).
// Every op fences before it returns (simple and safe for host-accessible spaces, whose outputs host code
// may read at once; a GPU build would want the fences only where the host reads or a staged input dies).
// Call Kokkos::initialize (or hold a Kokkos::ScopeGuard) before using a Kokkos space.

#include "piecrust/backends/kokkos/add_bias.hpp"
#include "piecrust/backends/kokkos/append_kv.hpp"
#include "piecrust/backends/kokkos/attention_plan.hpp"
#include "piecrust/backends/kokkos/copy.hpp"
#include "piecrust/backends/kokkos/dequantize.hpp"
#include "piecrust/backends/kokkos/embedding.hpp"
#include "piecrust/backends/kokkos/gemm.hpp"
#include "piecrust/backends/kokkos/merge_states.hpp"
#include "piecrust/backends/kokkos/paged_attention.hpp"
#include "piecrust/backends/kokkos/rms_norm.hpp"
#include "piecrust/backends/kokkos/rope.hpp"
#include "piecrust/backends/kokkos/sample.hpp"
#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/backends/kokkos/geglu.hpp"
#include "piecrust/backends/kokkos/swiglu.hpp"
#include "piecrust/backends/kokkos/weight_reader.hpp"
