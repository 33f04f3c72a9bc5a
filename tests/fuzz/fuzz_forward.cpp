// libFuzzer target for the runtime's passes and steps: the input is read as a few rounds of programs on an
// engine over the tiny random Llama (page size 4, a small pool), each program a few operations on its own
// contexts or on one context every program shares: fills (ids up to past the vocabulary), passes with any
// explicit positions (small, near the context length, any 32-bit value), attention rows of any runs and
// count, samples and probes at any index, logit masks, defer_commit, generation with and without a drafter,
// forks, masking, page drops and raw page operations. Programs of a round share steps, so passes of several
// contexts (and two passes of the shared one) meet in one step.
//
// Every input must run or throw a piecrust::Error, never crash, read out of bounds or exhaust memory; every
// position in a page table stays below the context length, and once the contexts are gone every page is
// back in the pool and none is content-indexed.
//
// Seeds: tests/fuzz/corpus/forward/ (small byte programs; any bytes are a program).

#include <piecrust/core/error.hpp>

#include "tiny_runtime.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <span>
#include <vector>

namespace {

using piecrust::testing::Tiny;
using Ctx = piecrust::Context<Tiny>;
constexpr std::uint32_t page_size = 4;
constexpr std::size_t num_pages = 40;

void check(bool ok, char const* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_forward: invariant broken: %s\n", what);
    std::abort();
  }
}

// The input as a stream of small numbers; zeros once it is used up.
class Bytes {
 public:
  explicit Bytes(std::span<std::uint8_t const> b) : b_(b) {}
  [[nodiscard]] bool done() const { return i_ >= b_.size(); }
  std::uint32_t u8() { return i_ < b_.size() ? b_[i_++] : 0u; }
  std::uint32_t u16() { return u8() | (u8() << 8); }
  std::uint32_t u32() { return u16() | (u16() << 16); }
  bool bit() { return (u8() & 1) != 0; }
  std::uint32_t below(std::uint32_t n) { return n == 0 ? 0 : u8() % n; }

  // A position: small, near the context length (1024), or any 32-bit value.
  std::uint32_t position() {
    switch (u8() % 4) {
      case 0: return u8();
      case 1: return 1016 + u8() % 16;
      case 2: return 0xFFFFFFF0u + u8() % 16;
      default: return u32();
    }
  }
  // A token id, now and then past the vocabulary (512).
  std::uint32_t token() { return u16() % 530; }

 private:
  std::span<std::uint8_t const> b_;
  std::size_t i_ = 0;
};

piecrust::AttentionMask random_row(Bytes& in) {
  std::vector<std::uint32_t> runs(in.below(5));
  for (auto& r : runs) r = in.u8() % 40;
  return piecrust::AttentionMask::from_runs(runs);
}

piecrust::SamplerSpec random_sampler(Bytes& in) {
  switch (in.u8() % 5) {
    case 0: return piecrust::samplers::greedy();
    case 1: return piecrust::samplers::multinomial();
    case 2: return piecrust::samplers::top_k(piecrust::TopK(1 + in.u8() % 600), piecrust::Temperature(0.1f + static_cast<float>(in.u8()) / 64.0f));
    case 3: return piecrust::samplers::top_p(piecrust::TopP(static_cast<float>(in.u8()) / 200.0f));
    default: return piecrust::samplers::min_p(piecrust::MinP(static_cast<float>(in.u8()) / 200.0f));
  }
}

piecrust::Task<void> pass(Ctx& ctx, Bytes& in) {
  auto f = ctx.forward();
  if (in.bit()) f.input_pending();
  std::size_t const n = in.below(8);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::uint32_t> const t{in.token()};
    if (in.bit()) {
      std::vector<std::uint32_t> const p{in.position()};
      f.input_at(t, p);
    } else {
      f.input(t);
    }
  }
  std::size_t const indexable = n + (ctx.pending_tokens().size());
  if (in.below(4) == 0) {
    std::vector<piecrust::AttentionMask> rows;
    std::size_t const count = indexable + in.below(3) - (indexable > 0 ? 1 : 0);
    for (std::size_t i = 0; i < count && i < 16; ++i) rows.push_back(random_row(in));
    f.attention_mask(std::move(rows));
  }
  if (in.below(4) == 0) {
    std::vector<std::uint32_t> allowed(in.below(4));
    for (auto& a : allowed) a = in.u16() % 512;
    f.mask(piecrust::LogitMask::allow(allowed, in.bit() ? 512 : 100 + in.below(600)));
  }
  for (std::size_t s = in.below(3); s > 0; --s) {
    std::vector<std::size_t> at(in.below(3));
    for (auto& a : at) a = in.below(static_cast<std::uint32_t>(indexable + 2));
    (void)f.sample(std::move(at), random_sampler(in));
  }
  switch (in.below(6)) {
    case 0: (void)f.probe(in.below(static_cast<std::uint32_t>(indexable + 1)), piecrust::Logits{}); break;
    case 1: (void)f.probe(in.below(static_cast<std::uint32_t>(indexable + 1)), piecrust::Distribution{static_cast<float>(in.u8()) / 32.0f, in.u16() % 600}); break;
    case 2: (void)f.probe(in.below(static_cast<std::uint32_t>(indexable + 1)), piecrust::Logprob{in.token()}); break;
    case 3: (void)f.probe(in.below(static_cast<std::uint32_t>(indexable + 1)), piecrust::Entropy{static_cast<float>(in.u8()) / 32.0f}); break;
    default: break;
  }
  if (in.bit()) f.defer_commit();
  (void)co_await f.execute();
}

piecrust::Task<void> op(piecrust::Engine<Tiny>& e, std::deque<Ctx>& mine, Ctx& shared, Bytes& in) {
  Ctx& c = in.bit() ? shared : mine[in.below(static_cast<std::uint32_t>(mine.size()))];
  switch (in.u8() % 10) {
    case 0: {
      std::vector<std::uint32_t> t(in.below(12));
      for (auto& x : t) x = in.token();
      c.fill(t);
      break;
    }
    case 1: co_await pass(c, in); break;
    case 2: {
      std::size_t const n = 1 + in.below(5);
      if (in.bit()) {
        piecrust::NgramDrafter drafter(2, 1 + in.below(6));
        (void)co_await c.generate_with_drafter(drafter, piecrust::max_len(n));
      } else {
        (void)co_await c.generate(random_sampler(in), piecrust::max_len(n));
      }
      break;
    }
    case 3:
      if (mine.size() < 3) mine.push_back(c.fork());
      break;
    case 4: {
      std::size_t const b = in.below(64), len = in.below(64);
      c.mask_token_range(b, b + len, in.u8() % 4 != 0);
      break;
    }
    case 5: (void)c.drop_masked_kv_pages(); break;
    case 6: co_await c.flush(in.bit() ? piecrust::Flush::keep_last : piecrust::Flush::all); break;
    case 7: (void)c.inner().commit_full_working_pages(); break;
    case 8: c.inner().truncate_working_page_tokens(in.below(6)); break;
    default: {
      auto const p = co_await c.decode_step_dist(static_cast<float>(in.u8()) / 32.0f, in.below(8));
      check(p.first.size() == p.second.size(), "a distribution has one probability per id");
      break;
    }
  }
  (void)e;
}

piecrust::Task<void> program(piecrust::Engine<Tiny>& e, Ctx& shared, Bytes& in) {
  std::deque<Ctx> mine;  // stable references across forks
  mine.push_back(e.create_context());
  for (std::size_t k = 1 + in.below(6); k > 0 && !in.done(); --k) {
    try {
      co_await op(e, mine, shared, in);
    } catch (piecrust::Error const&) {
      // A typed refusal is a legal outcome; the invariants below are checked either way.
    }
    for (Ctx const& c : mine) {
      for (piecrust::TokenMeta const& t : c.page_table().tokens()) check(t.position < 1024, "positions stay below the context length");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  if (size > 4096) return 0;  // long programs only repeat what short ones reach
  Bytes in(std::span(data, size));
  {
    piecrust::Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options(num_pages, page_size));
    {
      Ctx shared = e.create_context();
      for (int round = 0; round < 4 && !in.done(); ++round) {
        for (std::size_t p = 1 + in.below(3); p > 0; --p) e.spawn(program(e, shared, in));
        try {
          e.run();
        } catch (piecrust::Error const&) {
          // run() rethrows a program's escaped error; programs catch theirs, so this is not expected either.
          check(false, "a program ended with an error it did not catch");
        }
        for (piecrust::TokenMeta const& t : shared.page_table().tokens()) check(t.position < 1024, "positions stay below the context length");
      }
    }
    check(e.pool().free_count() == e.pool().num_pages(), "every page is back once the contexts are gone");
    check(e.pool().stats().content_indexed == 0, "no page stays content-indexed");
  }
  return 0;
}
