#pragma once
// KV transfer: a context's committed pages to an export blob (kv_export.hpp's format) and back. The K/V bytes
// move with the kernel layer's page operations on the model's space (read_kv_pages / write_kv_pages); this
// header only decides which pages and checks that a blob fits the engine it is imported into: the same model
// identity and layout, token ids inside the vocabulary, positions inside the context length. The K/V bytes
// cannot be checked; untrusted pages stay private to the importer (kv_trust.hpp).

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_table.hpp>
#include <piecrust/core/token_meta.hpp>
#include <piecrust/kernels/kv_pages.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/kv_trust.hpp>
#include <piecrust/runtime/masked_slots.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piecrust::detail {

/// The committed pages of `t` as an export blob; `header` describes the engine (num_pages is filled in).
/// Throws InvalidState (nothing exported) when a committed page holds K/V computed under a LoRA adapter:
/// adapter ids mean nothing outside this process, and imported as base-model K/V such a page would be shared
/// with base contexts.
template <class S, class Kv>
std::vector<std::uint8_t> export_committed_pages(S const& space, Kv const& kv, PageTable const& t, KvExportHeader header) {
  for (std::size_t p = 0; p < t.committed_pages().size(); ++p) {
    for (TokenMeta const& m : t.committed_page_tokens(p)) {
      if (m.adapter != 0) {
        fail<InvalidState>("Context::export_kv_pages: committed page ", p, " holds K/V computed under LoRA adapter id ",
                           m.adapter, "; exported pages do not record adapters (nothing was exported)");
      }
    }
  }
  KvExport e;
  e.header = std::move(header);
  e.header.num_pages = t.committed_pages().size();
  for (std::size_t p = 0; p < t.committed_pages().size(); ++p) {
    auto const meta = t.committed_page_tokens(p);
    e.tokens.insert(e.tokens.end(), meta.begin(), meta.end());
  }
  e.header.window_released_pages = t.window_released_pages();
  std::vector<std::uint32_t> const pages(t.committed_pages().begin(), t.committed_pages().end());  // [num_pages]
  std::vector<WindowPageId> window;  // [num_pages] with a window store: the released ones read as zeros
  if (t.pool().has_window_store()) {
    for (std::size_t p = 0; p < pages.size(); ++p) {
      window.push_back(p < t.window_released_pages() ? no_window_page : t.pool().window_page(pages[p]));
    }
  }
  e.bytes.resize(pages.size() * kv.num_layers() * kv.page_bytes());
  read_kv_pages(space, kv, std::span<std::uint32_t const>(pages), std::as_writable_bytes(std::span(e.bytes)),
                std::span<WindowPageId const>(window));
  return encode_kv_export(e);
}

/// A forged entry's fingerprint as it may appear in a message: at most 200 bytes, anything but printable ASCII
/// as \xNN (no terminal escapes or megabytes in a log).
inline std::string printable(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 200; ++i) {
    auto const c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  if (s.size() > 200) out += message("... (", s.size(), " bytes)");
  return out;
}

/// Throws InvalidArgument naming the first field where `got` (an imported blob's header) differs from this
/// engine's `want` (num_pages is not compared); for the model, the message names both identities.
inline void check_import_fits(KvExportHeader const& got, KvExportHeader const& want) {
  auto mismatch = [](char const* field, auto g, auto w) {
    fail<InvalidArgument>("Context::from_imported: the entry's ", field, " is ", g, " but this engine's is ", w);
  };
  if (got.fingerprint != want.fingerprint) mismatch("model", printable(got.fingerprint), want.fingerprint);
  if (got.page_size != want.page_size) mismatch("page_size", got.page_size, want.page_size);
  if (got.num_layers != want.num_layers) mismatch("num_layers", got.num_layers, want.num_layers);
  if (got.num_kv_heads != want.num_kv_heads) mismatch("num_kv_heads", got.num_kv_heads, want.num_kv_heads);
  if (got.head_dim != want.head_dim) mismatch("head_dim", got.head_dim, want.head_dim);
  if (got.element_size != want.element_size) mismatch("element_size", got.element_size, want.element_size);
}

/// Throws OutOfRange, naming the record and its value, for a token id >= `vocab_size`, a position that is not
/// below `context_length` (0: unknown, then only 2^32 - 1 is refused, where the next position would wrap), or
/// more tokens than `context_length`. A forged entry with a valid checksum reaches this check.
inline void check_import_records(KvExport const& e, std::size_t vocab_size, std::size_t context_length) {
  std::uint64_t const position_limit = context_length > 0 ? context_length : UINT32_MAX;
  if (context_length > 0 && e.tokens.size() > context_length) {
    fail<OutOfRange>("Context::from_imported: the entry holds ", e.tokens.size(), " tokens > the model's context length ",
                     context_length);
  }
  for (std::size_t i = 0; i < e.tokens.size(); ++i) {
    TokenMeta const& t = e.tokens[i];
    if (t.token >= vocab_size) {
      fail<OutOfRange>("Context::from_imported: the entry's token ", i, " has id ", t.token, " >= vocab = ", vocab_size);
    }
    if (t.position >= position_limit) {
      fail<OutOfRange>("Context::from_imported: the entry's token ", i, " has position ", t.position,
                       context_length > 0 ? " >= the model's context length " : " >= the largest position ",
                       position_limit);
    }
  }
}

/// Fills the empty context table `t` with the pages of a checked export `e`: reserves them (OutOfPages with
/// nothing changed), writes their K/V, commits them and returns the masked slots the pages carry. Trusted
/// pages are shared by content like computed ones; untrusted pages are committed private (PageSharing).
template <class S, class Kv>
MaskedSlots import_pages_into(S const& space, Kv& kv, KvExport const& e, PageTable& t, KvTrust trust) {
  std::size_t const pages = e.header.num_pages;
  t.reserve_working_pages(pages);
  t.append_working_tokens(e.tokens);
  std::vector<std::uint32_t> const ids(t.working_pages().begin(),
                                       t.working_pages().begin() + static_cast<std::ptrdiff_t>(pages));  // [pages]
  std::vector<WindowPageId> window;  // [pages] with a window store
  if (t.pool().has_window_store()) {
    for (std::size_t p = 0; p < pages; ++p) window.push_back(t.pool().window_page(ids[p]));
  }
  write_kv_pages(space, kv, std::span<std::uint32_t const>(ids), std::as_bytes(std::span(e.bytes)),
                 std::span<WindowPageId const>(window));
  t.commit_working_pages(pages, trust == KvTrust::trusted ? PageSharing::by_content : PageSharing::private_pages);
  // The pages the exporter's window layers had given back (zeros in the blob) give theirs back here too; without
  // window pages, content lookups never find them (PagePool::find_content).
  t.release_window_pages_before(e.header.window_released_pages);
  return MaskedSlots::from_tokens(e.tokens);
}

}  // namespace piecrust::detail
