#pragma once
// Device building blocks of sample and the probes: one thread block per row of logits.
//
// Token order (as the host's detail/logit_rows.hpp): logit descending, then id ascending. No sort of the
// vocabulary: a kept set "the first N tokens of the order" (top-k) or "the shortest prefix of the order
// whose mass reaches a target" (top-p) is found by a pivot search over the order key, most significant
// radix digit first: one pass per 8-bit digit histograms the candidates still tied with the pivot
// prefix (count, or probability mass) and fixes the digit where the target is reached. After four
// passes the pivot is the exact logit of the last kept token; ties at that logit are cut in id order.
// The idea (threshold search instead of a sort) is the one behind FlashInfer's sorting-free top-k/top-p
// sampling; the exact digit-wise search here keeps the kept set identical to the host's, so the same
// Philox draw (seed, row, step) picks the same token on both backends.
//
// Determinism: masses are summed in 2^-40 fixed point with integer atomics (integer addition is
// associative, so the result does not depend on the order threads arrive in); prefix sums for the
// inverse CDF are block scans in id order. Same inputs, same key: same token, run after run.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/scratch.hpp"
#include "piecrust/core/logit_mask.hpp"
#include "piecrust/kernels/detail/logit_rows.hpp"

namespace piecrust::gpu::detail {

/// Vocabulary limit of the fixed-point mass sums: 2^23 weights of at most 2^40 each fit in 63 bits.
inline constexpr std::size_t max_vocab = std::size_t{1} << 23;
inline constexpr std::uint32_t no_mask_offset = std::numeric_limits<std::uint32_t>::max();

/// Per-row LogitMasks as bitmaps: offsets [rows] (no_mask_offset: allow all), words [sum][vocab / 32].
/// Expanded on the host from the allowed runs (O(vocab / 32 + runs) per masked row) and uploaded.
struct MaskBits {
  Staged<std::uint32_t> offsets;
  Staged<std::uint32_t> words;
};

inline MaskBits stage_masks(Scratch& scratch, std::size_t rows, std::size_t vocab, std::span<LogitMask const> masks) {
  std::vector<std::uint32_t> offsets(rows, no_mask_offset);  // [rows]
  std::vector<std::uint32_t> words;                          // [masked rows][ceil(vocab / 32)]
  std::size_t const per_row = (vocab + 31) / 32;
  std::vector<piecrust::detail::IdRun> runs;
  for (std::size_t r = 0; r < masks.size(); ++r) {
    if (masks[r].empty()) continue;
    piecrust::detail::allowed_runs(masks[r], vocab, runs);
    offsets[r] = static_cast<std::uint32_t>(words.size());
    words.resize(words.size() + per_row, 0u);
    std::uint32_t* w = words.data() + offsets[r];
    for (piecrust::detail::IdRun const run : runs) {
      for (std::uint32_t i = run.begin; i < run.end;) {
        if (i % 32 == 0 && i + 32 <= run.end) {
          w[i / 32] = 0xffffffffu;
          i += 32;
        } else {
          w[i / 32] |= 1u << (i % 32);
          ++i;
        }
      }
    }
  }
  MaskBits m;
  m.offsets = scratch.upload(std::span<std::uint32_t const>(offsets));
  m.words = scratch.upload(std::span<std::uint32_t const>(words));
  return m;
}

/// Whether p points to memory the host owns (pageable or pinned), i.e. not device or managed memory.
inline bool is_host_pointer(void const* p) {
  pointer_attributes_t attr{};
  error_t const e = PIECRUST_GPU_API(PointerGetAttributes)(&attr, p);
  if (e != success) {
    (void)PIECRUST_GPU_API(GetLastError)();  // older runtimes report unregistered host memory as an error
    return true;
  }
#if defined(__HIPCC__)
  return attr.memoryType == hipMemoryTypeHost;
#else
  return attr.type == cudaMemoryTypeHost || attr.type == cudaMemoryTypeUnregistered;
#endif
}

#if PIECRUST_DEVICE_COMPILE

#if defined(PIECRUST_GPU_EMULATION)
inline constexpr int row_threads = 64;  // the host emulation of the tests: 2 warps of cooperative threads
#else
inline constexpr int row_threads = 1024;
#endif
/// Consecutive ids per thread in the id-ordered scans (a tile is row_threads * scan_items ids).
inline constexpr int scan_items = 4;

/// Order-preserving key of a float: a > b as floats iff key(a) > key(b) as unsigned integers.
__device__ __forceinline__ std::uint32_t order_key(float f) {
  std::uint32_t const u = __float_as_uint(f);
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(std::uint32_t k) {
  return __uint_as_float((k & 0x80000000u) != 0u ? (k & 0x7fffffffu) : ~k);
}
/// A weight in (0, 1] as 2^-40 fixed point.
__device__ __forceinline__ unsigned long long to_fixed(float w) {
  return static_cast<unsigned long long>(static_cast<double>(w) * 0x1.0p40);
}

struct RowMask {
  std::uint32_t const* words;  // [vocab / 32] or null (allow all)
  __device__ __forceinline__ bool allows(std::uint32_t i) const {
    return words == nullptr || ((words[i >> 5] >> (i & 31u)) & 1u) != 0u;
  }
};

__device__ __forceinline__ RowMask row_mask(std::uint32_t const* offsets, std::uint32_t const* words, std::size_t row) {
  if (offsets == nullptr || offsets[row] == no_mask_offset) return RowMask{nullptr};
  return RowMask{words + offsets[row]};
}

/// Shared memory of one row block.
struct RowShared {
  unsigned long long u64[max_warps];
  double f64[max_warps];
  std::uint32_t u32[max_warps];
  std::uint32_t count[256];
  unsigned long long mass[256];
  std::uint32_t digit;
  bool found;
  std::uint32_t result;
};

struct MaxU64 {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
    return a > b ? a : b;
  }
};

/// The first token of the order among allowed ids: (its logit, its id). Ties: the lowest id.
__device__ __forceinline__ void row_argmax(float const* l, std::uint32_t vocab, RowMask mask, RowShared& sh,
                                           float& lmax, std::uint32_t& arg) {
  unsigned long long best = 0;
  for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (!mask.allows(i)) continue;
    unsigned long long const packed = (static_cast<unsigned long long>(order_key(l[i])) << 32) | (0xffffffffu - i);
    best = packed > best ? packed : best;
  }
  best = block_reduce(best, MaxU64{}, sh.u64);
  lmax = key_to_float(static_cast<std::uint32_t>(best >> 32));
  arg = 0xffffffffu - static_cast<std::uint32_t>(best & 0xffffffffu);
}

/// The result of a pivot search: kept(i) = in(i) && (all || key(i) > pivot || (key(i) == pivot && i <= id_cut)).
struct Cut {
  bool all;
  std::uint32_t pivot;
  std::uint32_t id_cut;
  __device__ __forceinline__ bool keeps(std::uint32_t key, std::uint32_t i) const {
    return all || key > pivot || (key == pivot && i <= id_cut);
  }
};

/// The j-th (1-based) id in ascending order with pred(i); every thread gets it.
template <class Pred>
__device__ std::uint32_t nth_in_id_order(std::uint32_t vocab, std::uint32_t j, Pred pred, RowShared& sh) {
  std::uint32_t carry = 0;
  if (threadIdx.x == 0) sh.found = false;
  __syncthreads();
  std::uint32_t const tile = blockDim.x * scan_items;
  for (std::uint32_t base = 0; base < vocab; base += tile) {
    std::uint32_t const first = base + threadIdx.x * scan_items;
    std::uint32_t mine = 0;
    for (int k = 0; k < scan_items; ++k) mine += (first + k < vocab && pred(first + k)) ? 1u : 0u;
    std::uint32_t total = 0;
    std::uint32_t const before = carry + block_exclusive_scan(mine, total, sh.u32);
    if (before < j && j <= before + mine) {
      std::uint32_t c = before;
      for (int k = 0; k < scan_items; ++k) {
        if (first + k < vocab && pred(first + k) && ++c == j) {
          sh.result = first + k;
          sh.found = true;
        }
      }
    }
    __syncthreads();
    if (sh.found) break;
    carry += total;
  }
  std::uint32_t const r = sh.result;
  __syncthreads();
  return r;
}

/// Pivot search (see the top of this file) over the ids with in(i): the cut of the order where the
/// accumulated quantity (count when Mass is false, else to_fixed(weight(i))) first reaches target >= 1.
template <bool Mass, class In, class Weight>
__device__ Cut pivot_search(float const* l, std::uint32_t vocab, In in, Weight weight, unsigned long long target,
                            RowShared& sh) {
  std::uint32_t prefix = 0;
  unsigned long long above = 0;  // quantity of candidates strictly before the current bin
  for (int pass = 0; pass < 4; ++pass) {
    int const shift = 24 - 8 * pass;
    std::uint32_t const high_mask = pass == 0 ? 0u : (0xffffffffu << (32 - 8 * pass));
    for (int b = static_cast<int>(threadIdx.x); b < 256; b += static_cast<int>(blockDim.x)) {
      sh.count[b] = 0;
      sh.mass[b] = 0;
    }
    if (threadIdx.x == 0) sh.found = false;
    __syncthreads();
    for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      if (!in(i)) continue;
      std::uint32_t const k = order_key(l[i]);
      if ((k & high_mask) != prefix) continue;
      std::uint32_t const b = (k >> shift) & 0xffu;
      atomicAdd(&sh.count[b], 1u);
      if constexpr (Mass) atomicAdd(&sh.mass[b], to_fixed(weight(i)));
    }
    __syncthreads();
    // The first bin, walking down from 255, where the running quantity reaches the target (such a bin
    // holds q >= 1 since target > above, hence a candidate). Warp 0: each lane sums a run of bins, a
    // lane scan finds the run, its lane walks it.
    if (threadIdx.x < static_cast<unsigned>(warp_size)) {
      constexpr int per_lane = 256 / warp_size;
      int const lane = static_cast<int>(threadIdx.x);
      auto q = [&](int b) -> unsigned long long { return Mass ? sh.mass[b] : sh.count[b]; };
      unsigned long long run = 0;
      for (int j = 0; j < per_lane; ++j) run += q(255 - lane * per_lane - j);
      unsigned long long const inclusive = warp_inclusive_scan(run);
      unsigned long long cum = above + (inclusive - run);  // integers: exact
      if (cum < target && above + inclusive >= target) {
        for (int j = 0; j < per_lane; ++j) {
          int const b = 255 - lane * per_lane - j;
          if (cum + q(b) >= target) {
            sh.digit = static_cast<std::uint32_t>(b);
            sh.u64[0] = cum;
            sh.found = true;
            break;
          }
          cum += q(b);
        }
      }
    }
    __syncthreads();
    bool const found = sh.found;
    std::uint32_t const digit = sh.digit;
    if (found) above = sh.u64[0];
    __syncthreads();
    if (!found) return Cut{true, 0, 0};  // the whole candidate set falls short of the target: keep all
    prefix |= digit << shift;
  }
  // Ties at the pivot: take them in id order until the target is reached.
  std::uint32_t const ties = sh.count[prefix & 0xffu];
  unsigned long long const tie_q = Mass ? sh.mass[prefix & 0xffu] : sh.count[prefix & 0xffu];
  __syncthreads();
  unsigned long long const per = tie_q / ties;  // ties share one logit, hence one weight
  unsigned long long const need = target - above;
  unsigned long long j = per == 0 ? ties : (need + per - 1) / per;
  if (j < 1) j = 1;
  if (j >= ties) return Cut{false, prefix, 0xffffffffu};
  std::uint32_t const pivot = prefix;
  std::uint32_t const id = nth_in_id_order(
      vocab, static_cast<std::uint32_t>(j), [&](std::uint32_t i) { return in(i) && order_key(l[i]) == pivot; }, sh);
  return Cut{false, pivot, id};
}

/// Inverse CDF in increasing id order over the ids with kept(i), weights weight(i), at u in [0, 1):
/// the first id whose running sum exceeds u * total (the last kept id if rounding leaves none).
template <class Kept, class Weight>
__device__ std::uint32_t pick_in_id_order(std::uint32_t vocab, Kept kept, Weight weight, double u, RowShared& sh) {
  double part = 0.0;
  std::uint32_t last = 0;
  for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (!kept(i)) continue;
    part += weight(i);
    last = i > last ? i : last;
  }
  double const total = block_reduce(part, Sum{}, sh.f64);
  std::uint32_t const last_kept =
      static_cast<std::uint32_t>(block_reduce(static_cast<unsigned long long>(last), MaxU64{}, sh.u64));
  double const target = u * total;
  if (threadIdx.x == 0) {
    sh.found = false;
    sh.result = 0xffffffffu;
  }
  __syncthreads();
  double carry = 0.0;
  std::uint32_t const tile = blockDim.x * scan_items;
  for (std::uint32_t base = 0; base < vocab; base += tile) {
    std::uint32_t const first = base + threadIdx.x * scan_items;
    double mine = 0.0;
    for (int k = 0; k < scan_items; ++k) {
      if (first + k < vocab && kept(first + k)) mine += weight(first + k);
    }
    double tile_total = 0.0;
    double const before = carry + block_exclusive_scan(mine, tile_total, sh.f64);
    if (mine > 0.0 && before <= target && target < before + mine) {
      double cum = before;
      for (int k = 0; k < scan_items; ++k) {
        if (first + k < vocab && kept(first + k)) {
          cum += weight(first + k);
          if (cum > target) {
            // Rounding of the scan may let two neighbouring threads both claim the target: lowest id wins.
            atomicMin(&sh.result, first + k);
            sh.found = true;
            break;
          }
        }
      }
    }
    __syncthreads();
    if (sh.found) break;
    carry += tile_total;
  }
  std::uint32_t const r = sh.found ? sh.result : last_kept;
  __syncthreads();
  return r;
}

/// lmax and log Z of a row at temperature 1 / inv_t (the host's normalize_row, same roundings).
struct Normalizer {
  float lmax;
  double log_z;
  double sum_w;
  double sum_wd;
};

__device__ __forceinline__ Normalizer normalize(float const* l, std::uint32_t vocab, RowMask mask, float inv_t,
                                                RowShared& sh) {
  float lmax = 0.0f;
  std::uint32_t arg = 0;
  row_argmax(l, vocab, mask, sh, lmax, arg);
  double sum = 0.0, sum_wd = 0.0;
  for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (!mask.allows(i)) continue;
    float const d = (l[i] - lmax) * inv_t;
    double const w = static_cast<double>(expf(d));
    sum += w;
    sum_wd += w * static_cast<double>(d);
  }
  sum = block_reduce(sum, Sum{}, sh.f64);
  sum_wd = block_reduce(sum_wd, Sum{}, sh.f64);
  return {lmax, log(sum), sum, sum_wd};
}

#endif  // PIECRUST_DEVICE_COMPILE

}  // namespace piecrust::gpu::detail
