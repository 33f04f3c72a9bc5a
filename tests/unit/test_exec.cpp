// The exec layer: concepts, Buffer, ShapedView, the Host space and its thread pool.

#include <catch2/catch.hpp>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/exec.hpp"

using namespace piecrust;

namespace {
struct NotASpace {};
struct NoFence {
  using execution_space = NoFence;
  using memory_space = HostMemory;
  static char const* name() { return "NoFence"; }
};
struct WrongTag {
  using execution_space = Host;  // claims to be another space
  using memory_space = HostMemory;
  void fence() const {}
  static char const* name() { return "WrongTag"; }
};
struct MinimalSpace {
  using execution_space = MinimalSpace;
  using memory_space = HostMemory;
  void fence() const {}
  static char const* name() { return "MinimalSpace"; }
};
}  // namespace

TEST_CASE("ExecutionSpace and MemorySpace are nominal opt-ins with structural checks", "[exec]") {
  STATIC_REQUIRE(ExecutionSpace<Host>);
  STATIC_REQUIRE(ExecutionSpace<MinimalSpace>);
  STATIC_REQUIRE_FALSE(ExecutionSpace<NotASpace>);
  STATIC_REQUIRE_FALSE(ExecutionSpace<NoFence>);
  STATIC_REQUIRE_FALSE(ExecutionSpace<WrongTag>);
  STATIC_REQUIRE(MemorySpace<HostMemory>);
  STATIC_REQUIRE_FALSE(MemorySpace<int>);
  STATIC_REQUIRE(host_accessible_space<Host>);
  STATIC_REQUIRE(HasKernel<ops::RmsNorm, Host>);
  STATIC_REQUIRE_FALSE(HasKernel<ops::RmsNorm, MinimalSpace>);
}

TEST_CASE("Buffer owns, moves and never copies", "[exec]") {
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<Buffer<float>>);
  STATIC_REQUIRE_FALSE(std::is_copy_assignable_v<Buffer<float>>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<Buffer<float>>);
  Buffer<float> a(100, 2.5f);  // [100]
  REQUIRE(a.size() == 100);
  REQUIRE(reinterpret_cast<std::uintptr_t>(a.data()) % HostMemory::alignment == 0);
  REQUIRE(a[99] == 2.5f);
  float* const p = a.data();
  Buffer<float> b(std::move(a));
  REQUIRE(b.data() == p);
  REQUIRE(a.data() == nullptr);  // NOLINT: moved-from state is specified
  REQUIRE(a.size() == 0);
  Buffer<float> c(3);
  c = std::move(b);
  REQUIRE(c.size() == 100);
  REQUIRE(c.span()[0] == 2.5f);
  Buffer<float> empty(0);
  REQUIRE(empty.empty());
}

TEST_CASE("ShapedView indexes row-major and converts to const", "[exec]") {
  Buffer<int> buf(24);  // [2][3][4]
  std::iota(buf.span().begin(), buf.span().end(), 0);
  ShapedView<int, 3> v = buf.view(2, 3, 4);
  REQUIRE(v.size() == 24);
  REQUIRE(v.stride(0) == 12);
  REQUIRE(v(1, 2, 3) == 23);
  REQUIRE(v(1, 0, 2) == 14);
  ShapedView<int const, 3> cv = v;
  REQUIRE(cv(0, 1, 1) == 5);
  auto row = v[1];
  STATIC_REQUIRE(decltype(row)::rank == 2);
  REQUIRE(row(2, 3) == 23);
  REQUIRE(v.flat().size() == 24);
}

TEST_CASE("Host thread pool covers every index once, nests and propagates exceptions", "[exec]") {
  Host const host(4);
  REQUIRE(host.concurrency() == 4);
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{100003}}) {
    std::vector<std::atomic<int>> hits(n);
    host.parallel_for(n, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (auto const& h : hits) REQUIRE(h.load() == 1);
  }
  std::atomic<long> total{0};
  host.parallel_for(16, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) {
      host.parallel_for(10, [&](std::size_t b2, std::size_t e2) { total += static_cast<long>(e2 - b2); });
    }
  });
  REQUIRE(total == 160);
  REQUIRE_THROWS_AS(host.parallel_for(100, [](std::size_t b, std::size_t) {
    if (b == 0) throw std::runtime_error("boom");
  }), std::runtime_error);
  // The pool is usable after an exception.
  std::atomic<int> count{0};
  host.parallel_for(50, [&](std::size_t b, std::size_t e) { count += static_cast<int>(e - b); });
  REQUIRE(count == 50);
  Host const shared;
  REQUIRE(shared.concurrency() >= 1);
  Host const single(1);
  int seq = 0;
  single.parallel_for(10, [&](std::size_t b, std::size_t e) { seq += static_cast<int>(e - b); });
  REQUIRE(seq == 10);
}
