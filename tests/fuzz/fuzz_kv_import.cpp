// libFuzzer target for KV import: the blob decoder, then Context::from_imported on an engine over the tiny
// random Llama (page size 4). Any input must either import or throw a piecrust::Error, never crash, read out
// of bounds or exhaust memory; an import that succeeds must hold what the engine allows (ids below the
// vocabulary, positions below the context length, untrusted pages outside content sharing) and give all its
// pages back when its context ends.
//
// Input: one control byte, then the blob. Control bit 0: recompute the blob's checksum first, so that
// mutations reach the checks behind it (a forger can always do that); bit 1: import as KvTrust::trusted;
// bit 2: after a successful import, run a one-token pass over the imported K/V.
//
// Seeds: tests/fuzz/corpus/kv_import/, real exports of the tiny model and forgeries of them, written by
//   fuzz_kv_import --write-seeds=DIR

#include <piecrust/core/error.hpp>
#include <piecrust/runtime/kv_export.hpp>

#include "tiny_runtime.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using piecrust::testing::Tiny;
constexpr std::uint32_t page_size = 4;
constexpr std::size_t num_pages = 64;

piecrust::Engine<Tiny>& engine() {
  static piecrust::Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options(num_pages, page_size));
  return e;
}

void check(bool ok, char const* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_kv_import: invariant broken: %s\n", what);
    std::abort();
  }
}

void fix_checksum(std::vector<std::uint8_t>& blob) {
  if (blob.size() < 8) return;
  std::uint64_t const sum = piecrust::detail::fnv1a(std::span(blob).first(blob.size() - 8));
  for (std::size_t i = 0; i < 8; ++i) blob[blob.size() - 8 + i] = static_cast<std::uint8_t>(sum >> (8 * i));
}

piecrust::Task<void> one_token_pass(piecrust::Context<Tiny>& ctx) {
  ctx.fill({1});
  co_await ctx.flush();
}

void import_one(std::vector<std::uint8_t> const& blob, std::uint8_t control) {
  auto& e = engine();
  piecrust::MemoryStore store;
  store.set("x", blob);
  auto const trust = (control & 2) != 0 ? piecrust::KvTrust::trusted : piecrust::KvTrust::untrusted;
  std::size_t const indexed_before = e.pool().stats().content_indexed;
  try {
    auto ctx = piecrust::Context<Tiny>::from_imported(e, store, "x", trust);
    auto const& t = ctx.page_table();
    auto const shape = e.shape();
    check(t.seq_len() == t.committed_pages().size() * page_size, "an import holds whole committed pages");
    for (piecrust::TokenMeta const& m : t.tokens()) {
      check(m.token < shape.vocab_size, "imported token id below the vocabulary");
      check(m.position < shape.context_length, "imported position below the context length");
      check(m.adapter == 0, "imported pages carry no adapter");
    }
    if (trust == piecrust::KvTrust::untrusted) {
      check(e.pool().stats().content_indexed == indexed_before, "untrusted pages stay out of content sharing");
    }
    if ((control & 4) != 0) {
      try {
        e.block_on(one_token_pass(ctx));
      } catch (piecrust::Error const&) {
      }
    }
  } catch (piecrust::Error const&) {
  }
  check(e.pool().free_count() == e.pool().num_pages(), "every page returns to the pool");
  check(store.list().size() == 1 && *store.get("x") == blob, "the store is unchanged");
}

// ---- seeds ----

std::vector<std::uint8_t> export_of(piecrust::Engine<Tiny>& e, std::vector<std::uint32_t> tokens) {
  piecrust::MemoryStore store;
  auto prog = [&](piecrust::Engine<Tiny>& e) -> piecrust::Task<void> {
    auto ctx = e.create_context();
    ctx.fill(tokens);
    co_await ctx.flush();
    ctx.export_kv_pages(store, "x");
  };
  e.block_on(prog(e));
  return *store.get("x");
}

template <class Edit>
std::vector<std::uint8_t> forged(std::vector<std::uint8_t> const& genuine, Edit edit) {
  piecrust::KvExport x = piecrust::decode_kv_export(genuine);
  edit(x);
  return piecrust::encode_kv_export(x);
}

void write_seeds(std::string const& dir) {
  auto& e = engine();
  auto const one = export_of(e, piecrust::testing::random_prompt(1, 5));     // 1 page
  auto const three = export_of(e, piecrust::testing::random_prompt(2, 13));  // 3 pages
  auto const none = export_of(e, {1, 2});                                    // no full page
  static Tiny other(piecrust::tiny_llama_weights(4), piecrust::testing::make_test_space());
  piecrust::Engine<Tiny> foreign(other, piecrust::testing::engine_options(num_pages, page_size));
  auto truncated = three;
  truncated.resize(truncated.size() / 2);
  auto broken_sum = one;
  broken_sum[broken_sum.size() / 2] ^= 0x40;
  struct Seed {
    char const* name;
    std::uint8_t control;
    std::vector<std::uint8_t> blob;
  };
  std::vector<Seed> const seeds = {
      {"one_page", 0, one},
      {"one_page_pass", 4, one},
      {"three_pages_trusted_pass", 6, three},
      {"no_pages", 0, none},
      {"foreign_model", 0, export_of(foreign, piecrust::testing::random_prompt(1, 5))},
      {"token_99999", 0, forged(one, [](piecrust::KvExport& x) { x.tokens[1].token = 99999; })},
      {"position_near_2_32", 0, forged(three, [](piecrust::KvExport& x) { x.tokens[9].position = 0xFFFFFFF0u; })},
      {"position_is_context_length", 0, forged(one, [](piecrust::KvExport& x) { x.tokens[0].position = 1024; })},
      {"positions_reversed_pass", 4, forged(three, [](piecrust::KvExport& x) {
         for (std::size_t i = 0; i < x.tokens.size(); ++i) x.tokens[i].position = static_cast<std::uint32_t>(x.tokens.size() - i);
       })},
      {"truncated", 0, truncated},
      {"checksum_broken", 0, broken_sum},
      {"checksum_fixed_by_control", 1, broken_sum},
  };
  for (Seed const& s : seeds) {
    std::ofstream out(dir + "/" + s.name, std::ios::binary);
    out.put(static_cast<char>(s.control));
    out.write(reinterpret_cast<char const*>(s.blob.data()), static_cast<std::streamsize>(s.blob.size()));
    if (!out) {
      std::fprintf(stderr, "fuzz_kv_import: cannot write %s/%s\n", dir.c_str(), s.name);
      std::exit(1);
    }
  }
  std::fprintf(stderr, "fuzz_kv_import: wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  std::string_view const flag = "--write-seeds=";
  for (int i = 1; i < *argc; ++i) {
    std::string_view const arg = (*argv)[i];
    if (arg.starts_with(flag)) {
      write_seeds(std::string(arg.substr(flag.size())));
      std::exit(0);
    }
  }
  (void)engine().model_identity();  // hash the weights once, before the first input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint8_t const control = data[0];
  std::vector<std::uint8_t> blob(data + 1, data + size);
  if ((control & 1) != 0) fix_checksum(blob);
  try {
    (void)piecrust::decode_kv_export(blob);  // the decoder alone
  } catch (piecrust::Error const&) {
  }
  import_one(blob, control);
  return 0;
}
