#pragma once
// Host-side launchers of the GPU attention kernels over raw device pointers and a stream. The KernelImpl
// specializations (paged_attention.hpp, merge_states.hpp beside this) call them with a Cuda space's
// stream and Scratch; benchmarks and tests may call them directly.
//
// One paged_attention call: build the TilePlan on the host (page-trim, tile classification, split-KV),
// upload it in ONE copy through the space's Scratch (its partial-state workspace lives there too),
// launch the decode kernel over decode items, the prefill kernel over prefill items, and the merge of
// split tokens, all on one stream. No allocation in steady state (Scratch grows geometrically).

#include "piecrust/config.hpp"
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/cuda/attention/decode_kernel.hpp"
#include "piecrust/backends/cuda/attention/kernel_args.hpp"
#include "piecrust/backends/cuda/attention/merge_kernel.hpp"
#include "piecrust/backends/cuda/attention/prefill_kernel.hpp"
#include "piecrust/backends/cuda/attention/tile_plan.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/scratch.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/paged_kv.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust::cuda::attention {

namespace detail {

inline constexpr int max_devices = 64;

/// Multiprocessors of `device` (cached; the split-KV heuristic sizes the grid from it).
inline int multiprocessor_count(int device) {
  static int cache[max_devices] = {};
  if (device >= 0 && device < max_devices && cache[device] > 0) return cache[device];
  int n = 0;
#if defined(__HIPCC__)
  gpu::check(hipDeviceGetAttribute(&n, hipDeviceAttributeMultiprocessorCount, device), "DeviceGetAttribute");
#else
  gpu::check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "DeviceGetAttribute");
#endif
  n = std::max(n, 1);
  if (device >= 0 && device < max_devices) cache[device] = n;
  return n;
}

/// Resident CTAs of `kernel` per multiprocessor (at least 1).
template <class Kernel>
int occupancy(Kernel kernel, int threads, std::size_t smem) {
  int n = 0;
  gpu::check(PIECRUST_GPU_API(OccupancyMaxActiveBlocksPerMultiprocessor)(&n, kernel, threads, smem),
             "OccupancyMaxActiveBlocksPerMultiprocessor");
  return std::max(n, 1);
}

template <int D, class T, int GMax>
struct DecodeLaunch {
  static void run(KernelArgs<T> const& a, std::size_t items, gpu::stream_t stream) {
    using C = DecodeConfig<D, T, GMax>;
    dim3 const grid(static_cast<unsigned>(items), a.num_kv_heads * a.head_blocks);
    auto* const kernel = decode_kernel<D, T, GMax>;
    PIECRUST_GPU_LAUNCH(kernel, grid, C::threads, 0, stream, a);
    gpu::check_launch("paged_attention decode_kernel");
  }
  static int occupancy_per_sm() {
    static int const n = occupancy(decode_kernel<D, T, GMax>, DecodeConfig<D, T, GMax>::threads, 0);
    return n;
  }
};

/// Calls f(std::integral_constant<int, GMax>{}) for the decode kernel's heads-per-CTA choice.
template <class F>
void dispatch_heads_per_cta(int heads, F&& f) {
  switch (heads) {
    case 1: f(std::integral_constant<int, 1>{}); return;
    case 2: f(std::integral_constant<int, 2>{}); return;
    case 4: f(std::integral_constant<int, 4>{}); return;
    default: f(std::integral_constant<int, 8>{}); return;
  }
}

#if PIECRUST_ATTENTION_TENSOR_CORES
template <int D, class T>
struct PrefillLaunch {
  /// Raises the kernel's dynamic shared-memory limit past 48 KiB on `device` (once per device).
  static void prepare(int device) {
    static bool done[max_devices] = {};
    if (device >= 0 && device < max_devices && done[device]) return;
    gpu::check(cudaFuncSetAttribute(prefill_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(PrefillConfig<D>::smem_bytes)),
               "FuncSetAttribute(MaxDynamicSharedMemorySize)");
    if (device >= 0 && device < max_devices) done[device] = true;
  }
  static void run(KernelArgs<T> const& a, std::size_t items, gpu::stream_t stream) {
    dim3 const grid(static_cast<unsigned>(items), a.num_kv_heads);
    auto* const kernel = prefill_kernel<D, T>;
    PIECRUST_GPU_LAUNCH(kernel, grid, PrefillConfig<D>::threads, PrefillConfig<D>::smem_bytes, stream, a);
    gpu::check_launch("paged_attention prefill_kernel");
  }
  static int occupancy_per_sm() {
    static int const n = occupancy(prefill_kernel<D, T>, PrefillConfig<D>::threads, PrefillConfig<D>::smem_bytes);
    return n;
  }
};
#endif

}  // namespace detail

/// Prefill q-tile size in tokens for a GQA group: 64 packed rows / group (0 = decode kernel only:
/// HIP, or a group wider than the tile).
inline std::size_t prefill_tokens_per_qtile(std::size_t group) {
#if PIECRUST_ATTENTION_TENSOR_CORES
  return group <= 64 ? 64 / group : 0;
#else
  (void)group;
  return 0;
#endif
}

/// A step's tile plan, staged in a device arena by one upload: what every layer's launch reads.
template <class T>
struct StagedPlan {
  TilePlan tiles;      // host copy (the launch sizes its grids from it)
  KernelArgs<T> args;  // the plan's device pointers and shapes; q, kv.data, out, lse and transform per launch
  WorkItem const* prefill_items = nullptr;  // device; args.items holds the decode items
  int heads_per_cta = 1;
  std::size_t tokens = 0;
};

/// Builds the tile plan of a step (tokens x qo_heads queries over a pool shaped like kv) and stages it, with
/// the split-KV workspaces, in `arena` (begin ... commit: the arena's previous frame is forgotten).
template <std::size_t D, class T>
void stage_plan(gpu::Scratch& arena, int device, std::size_t tokens, std::size_t qo_heads, PagedKv<T const> kv,
                PagedBatch const& batch, AttentionSelection const& selection, StagedPlan<T>& sp) {
  constexpr int d = static_cast<int>(D);
  std::size_t const group = qo_heads / kv.num_kv_heads;
  int const heads_per_cta = decode_heads_per_cta(group);
  std::size_t const head_blocks = (group + heads_per_cta - 1) / heads_per_cta;
  int const sms = detail::multiprocessor_count(device);

  PlanShape shape;
  shape.page_size = kv.page_size;
  shape.tokens_per_qtile = prefill_tokens_per_qtile(group);
  shape.decode_ctas_per_item = kv.num_kv_heads * head_blocks;
  shape.prefill_ctas_per_item = kv.num_kv_heads;
  detail::dispatch_heads_per_cta(heads_per_cta, [&](auto g) {
    shape.decode_capacity = static_cast<std::size_t>(sms) * detail::DecodeLaunch<d, T, decltype(g)::value>::occupancy_per_sm();
  });
#if PIECRUST_ATTENTION_TENSOR_CORES
  detail::PrefillLaunch<d, T>::prepare(device);
  shape.prefill_capacity = static_cast<std::size_t>(sms) * detail::PrefillLaunch<d, T>::occupancy_per_sm();
#endif
  sp.tiles = build_tile_plan(batch, selection, shape);
  sp.heads_per_cta = heads_per_cta;
  sp.tokens = tokens;
  TilePlan const& plan = sp.tiles;

  std::uint32_t const slots = plan.num_partial_slots();
  arena.begin();
  auto const s_requests = arena.upload(std::span<RequestInfo const>(plan.requests));
  auto const s_pages = arena.upload(std::span<std::uint32_t const>(plan.pages));
  auto const s_entries = arena.upload(std::span<Entry const>(plan.entries));
  auto const s_words = arena.upload(std::span<std::uint64_t const>(plan.words));
  auto const s_decode = arena.upload(std::span<WorkItem const>(plan.decode_items));
  auto const s_prefill = arena.upload(std::span<WorkItem const>(plan.prefill_items));
  auto const s_offsets = arena.upload(std::span<std::uint32_t const>(plan.part_offset));
  auto const s_part_v = arena.workspace<float>(std::size_t{slots} * qo_heads * D);  // [slots][qo_heads][D]
  auto const s_part_s = arena.workspace<float>(std::size_t{slots} * qo_heads);      // [slots][qo_heads]
  arena.commit();

  KernelArgs<T>& a = sp.args;
  a.page_size = static_cast<std::uint32_t>(kv.page_size);
  a.num_kv_heads = static_cast<std::uint32_t>(kv.num_kv_heads);
  a.qo_heads = static_cast<std::uint32_t>(qo_heads);
  a.group = static_cast<std::uint32_t>(group);
  a.head_blocks = static_cast<std::uint32_t>(head_blocks);
  a.requests = arena.get(s_requests);
  a.pages = arena.get(s_pages);
  a.entries = arena.get(s_entries);
  a.words = arena.get(s_words);
  a.part_offset = arena.get(s_offsets);
  a.part_v = arena.get(s_part_v);
  a.part_s = arena.get(s_part_s);
  a.items = arena.get(s_decode);
  sp.prefill_items = arena.get(s_prefill);
}

/// One layer's attention over a staged plan: q, kv.data, out and lse are device pointers; params.sm_scale
/// is resolved (> 0). Asynchronous on `stream`.
template <std::size_t D, class T>
void launch_staged(StagedPlan<T> const& sp, gpu::stream_t stream, ShapedView<float const, 3> q, PagedKv<T const> kv,
                   PagedAttentionParams const& params, ShapedView<float, 3> out, ShapedView<float, 2> lse) {
  constexpr int d = static_cast<int>(D);
  if (sp.tokens == 0) return;
  TilePlan const& plan = sp.tiles;
  KernelArgs<T> a = sp.args;
  a.q = q.data();
  a.kv = kv.data;
  a.transform = detail::make_transform(params.sm_scale, params.logits_soft_cap);
  a.out = out.data();
  a.lse = lse.data();
  if (!plan.decode_items.empty()) {
    detail::dispatch_heads_per_cta(sp.heads_per_cta, [&](auto g) {
      detail::DecodeLaunch<d, T, decltype(g)::value>::run(a, plan.decode_items.size(), stream);
    });
  }
#if PIECRUST_ATTENTION_TENSOR_CORES
  if (!plan.prefill_items.empty()) {
    a.items = sp.prefill_items;
    detail::PrefillLaunch<d, T>::run(a, plan.prefill_items.size(), stream);
  }
#endif
  if (plan.num_partial_slots() > 0) {
    PIECRUST_GPU_LAUNCH(merge_kernel<>, static_cast<unsigned>(sp.tokens), merge_threads, 0, stream, a.part_v, a.part_s,
                        a.part_offset, 0u, a.qo_heads, static_cast<unsigned>(D), a.out, a.lse);
    gpu::check_launch("paged_attention merge_kernel");
  }
}

/// paged_attention on the GPU, planned for this call alone (in `scratch`). q, kv.data, out and lse are device
/// pointers on `device`; batch and selection are host objects, already validated by piecrust::paged_attention;
/// params.sm_scale is resolved (> 0). Asynchronous on `stream`.
template <std::size_t D, class T>
void launch_paged_attention(gpu::Scratch& scratch, gpu::stream_t stream, int device, ShapedView<float const, 3> q,
                            PagedKv<T const> kv, PagedBatch const& batch, AttentionSelection const& selection,
                            PagedAttentionParams const& params, ShapedView<float, 3> out, ShapedView<float, 2> lse) {
  if (q.extent(0) == 0) return;
  StagedPlan<T> sp;
  stage_plan<D, T>(scratch, device, q.extent(0), q.extent(1), kv, batch, selection, sp);
  launch_staged<D, T>(sp, stream, q, kv, params, out, lse);
}

/// merge_states on the GPU: v [tokens][states][heads][head_dim], s [tokens][states][heads] (device);
/// v_out [tokens][heads][head_dim], s_out [tokens][heads]. Asynchronous on `stream`.
inline void launch_merge_states(gpu::stream_t stream, ShapedView<float const, 4> v, ShapedView<float const, 3> s,
                                ShapedView<float, 3> v_out, ShapedView<float, 2> s_out) {
  if (v.extent(0) == 0 || v.extent(2) == 0) return;
  PIECRUST_GPU_LAUNCH(merge_kernel<>, static_cast<unsigned>(v.extent(0)), merge_threads, 0, stream, v.data(), s.data(), nullptr, static_cast<unsigned>(v.extent(1)), static_cast<unsigned>(v.extent(2)),
      static_cast<unsigned>(v.extent(3)), v_out.data(), s_out.data());
  gpu::check_launch("merge_states merge_kernel");
}

}  // namespace piecrust::cuda::attention

#endif  // PIECRUST_DEVICE_COMPILE
