#pragma once
// ShapedView<T, Rank>: a non-owning, row-major (C order), contiguous view of Rank dimensions.

#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

#include "piecrust/config.hpp"

namespace piecrust {

/// A pointer plus extents; the last index varies fastest (like std::mdspan with layout_right). Kernels
/// take their arguments as ShapedViews and check the extents against each other before touching data.
/// A view of `T const` is read-only; a ShapedView<T> converts to ShapedView<T const>.
template <class T, std::size_t Rank>
  requires(Rank >= 1)
class ShapedView {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  static constexpr std::size_t rank = Rank;

  constexpr ShapedView() noexcept = default;

  template <std::convertible_to<std::size_t>... Extents>
    requires(sizeof...(Extents) == Rank)
  constexpr ShapedView(T* data, Extents... extents) noexcept
      : data_(data), extents_{static_cast<std::size_t>(extents)...} {}

  constexpr ShapedView(T* data, std::array<std::size_t, Rank> const& extents) noexcept
      : data_(data), extents_(extents) {}

  /// A view of T converts to a view of T const.
  template <class U>
    requires(!std::same_as<U, T> && std::convertible_to<U (*)[], T (*)[]>)
  constexpr ShapedView(ShapedView<U, Rank> const& other) noexcept  // NOLINT: implicit by design
      : data_(other.data()), extents_(other.extents()) {}

  /// A rank-1 view over a span.
  constexpr explicit ShapedView(std::span<T> s) noexcept
    requires(Rank == 1)
      : data_(s.data()), extents_{s.size()} {}

  PIECRUST_HOST_DEVICE constexpr T* data() const noexcept { return data_; }
  constexpr std::array<std::size_t, Rank> const& extents() const noexcept { return extents_; }
  PIECRUST_HOST_DEVICE constexpr std::size_t extent(std::size_t d) const noexcept { return extents_[d]; }
  PIECRUST_HOST_DEVICE constexpr std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t d = 0; d < Rank; ++d) n *= extents_[d];
    return n;
  }
  constexpr bool empty() const noexcept { return size() == 0; }
  /// Elements between consecutive indices of dimension d.
  PIECRUST_HOST_DEVICE constexpr std::size_t stride(std::size_t d) const noexcept {
    std::size_t s = 1;
    for (std::size_t i = d + 1; i < Rank; ++i) s *= extents_[i];
    return s;
  }

  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  PIECRUST_HOST_DEVICE constexpr T& operator()(I... idx) const noexcept {
    std::size_t const index[] = {static_cast<std::size_t>(idx)...};
    std::size_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset = offset * extents_[d] + index[d];
    return data_[offset];
  }

  /// The rank-1 view of row i of the first dimension (Rank == 2), or the sub-view (Rank > 2).
  constexpr auto operator[](std::size_t i) const noexcept {
    if constexpr (Rank == 1) {
      return data_[i];
    } else {
      std::array<std::size_t, Rank - 1> sub{};
      for (std::size_t d = 1; d < Rank; ++d) sub[d - 1] = extents_[d];
      return ShapedView<T, Rank - 1>(data_ + i * stride(0), sub);
    }
  }

  /// All elements as one span (the view is contiguous).
  constexpr std::span<T> flat() const noexcept { return {data_, size()}; }

 private:
  T* data_ = nullptr;
  std::array<std::size_t, Rank> extents_{};
};

}  // namespace piecrust
