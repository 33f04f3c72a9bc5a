#pragma once
// Prefix caching across processes: the KV pages of a long, fixed prefix (a system prompt, a document) are
// computed once, exported to a Store (SqliteStore: a file that survives the process) and imported by later
// runs with no prefill at all.
//
// Only committed (full) pages are exported, so an entry holds the prefix rounded down to whole pages; the
// few prefix tokens after the last full page are filled again on import. An entry is keyed by a hash of the
// prefix's tokens, and the imported tokens are compared with the prefix before use.

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::examples {

/// A store key for `prefix`: FNV-1a over its token ids (Fowler, Noll, Vo).
inline std::string prefix_key(std::span<std::uint32_t const> prefix) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint32_t const t : prefix) {
    for (int b = 0; b < 4; ++b) {
      h ^= (t >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "prefix-%016llx-%zu", static_cast<unsigned long long>(h), prefix.size());
  return buf;
}

struct PrefixCacheResult {
  bool imported = false;          // the prefix's pages came from the store
  std::size_t reused_tokens = 0;  // prefix tokens whose K/V was imported, not computed
  std::size_t computed_tokens = 0;  // tokens this call computed (Engine::stats().tokens difference)
  Generation answer;
};

/// Answers `question` after `prefix`. If the store has the prefix's pages, imports them; otherwise prefills the
/// prefix and exports its pages for the next run.
template <class M>
Task<PrefixCacheResult> answer_with_prefix_cache(Engine<M>& engine, Store& store, std::vector<std::uint32_t> prefix,
                                                 std::vector<std::uint32_t> question, SamplerSpec sampler, StopCondition stop) {
  PrefixCacheResult r;
  std::size_t const tokens_before = engine.stats().tokens;
  std::string const key = prefix_key(prefix);
  std::optional<Context<M>> ctx;
  if (store.get(key)) {
    ctx.emplace(Context<M>::from_imported(engine, store, key));
    auto const held = ctx->token_ids();
    if (held.size() <= prefix.size() && std::equal(held.begin(), held.end(), prefix.begin())) {
      r.imported = true;
      r.reused_tokens = held.size();
      ctx->fill(std::span(prefix).subspan(held.size()));  // the tail after the last full page
    } else {
      ctx.reset();  // a colliding key: ignore the entry
    }
  }
  if (!ctx) {
    ctx.emplace(engine.create_context());
    ctx->fill(prefix);
    co_await ctx->flush();
    ctx->export_kv_pages(store, key);
  }
  ctx->fill(question);
  r.answer = co_await ctx->generate(std::move(sampler), std::move(stop));
  r.computed_tokens = engine.stats().tokens - tokens_before;
  co_return r;
}

}  // namespace piecrust::examples
