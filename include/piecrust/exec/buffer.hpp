#pragma once
// Buffer<T, Mem>: an owning, move-only array of T in memory space Mem.

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>

#include "piecrust/exec/host_memory.hpp"
#include "piecrust/exec/memory_space.hpp"
#include "piecrust/exec/shaped_view.hpp"

namespace piecrust {

/// Owns `size()` elements of a trivially copyable T in memory space Mem. Move-only: a copy between
/// memory spaces is an explicit operation of the backend, never an accident. Elements start
/// uninitialized unless a fill value is given (host-accessible spaces only).
template <class T, MemorySpace Mem = HostMemory>
  requires std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>
class Buffer {
 public:
  using value_type = T;
  using memory_space = Mem;

  Buffer() noexcept = default;
  explicit Buffer(std::size_t size, Mem mem = Mem{})
      : mem_(std::move(mem)),
        data_(size == 0 ? nullptr : static_cast<T*>(mem_.allocate(size * sizeof(T)))),
        size_(size) {}
  Buffer(std::size_t size, T const& fill, Mem mem = Mem{})
    requires memory_space_is_host_accessible<Mem>
      : Buffer(size, std::move(mem)) {
    for (std::size_t i = 0; i < size_; ++i) data_[i] = fill;
  }

  Buffer(Buffer const&) = delete;
  Buffer& operator=(Buffer const&) = delete;
  Buffer(Buffer&& other) noexcept
      : mem_(std::move(other.mem_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      mem_ = std::move(other.mem_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~Buffer() { release(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] T const* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  /// Host access (only for host-accessible memory spaces).
  [[nodiscard]] std::span<T> span() noexcept
    requires memory_space_is_host_accessible<Mem>
  {
    return {data_, size_};
  }
  [[nodiscard]] std::span<T const> span() const noexcept
    requires memory_space_is_host_accessible<Mem>
  {
    return {data_, size_};
  }
  T& operator[](std::size_t i) noexcept
    requires memory_space_is_host_accessible<Mem>
  {
    return data_[i];
  }
  T const& operator[](std::size_t i) const noexcept
    requires memory_space_is_host_accessible<Mem>
  {
    return data_[i];
  }

  /// A shaped view of the elements; the product of the extents must not exceed size().
  template <std::convertible_to<std::size_t>... Extents>
  [[nodiscard]] ShapedView<T, sizeof...(Extents)> view(Extents... extents) noexcept {
    return ShapedView<T, sizeof...(Extents)>(data_, extents...);
  }
  template <std::convertible_to<std::size_t>... Extents>
  [[nodiscard]] ShapedView<T const, sizeof...(Extents)> view(Extents... extents) const noexcept {
    return ShapedView<T const, sizeof...(Extents)>(data_, extents...);
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) mem_.deallocate(data_, size_ * sizeof(T));
    data_ = nullptr;
    size_ = 0;
  }

  [[no_unique_address]] Mem mem_{};
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace piecrust
