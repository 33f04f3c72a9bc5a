// Forged or foreign KV (issue 14, item 3): exports are bound to the model's identity (SHA-256 of the weights and
// the tokenizer), imports check ids and positions against the model, and imported pages never alias pages
// another context computed unless the store is trusted. Every refusal is typed, names the argument and the
// value, and leaves the engine, its pool, its other contexts and the store as they were.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <piecrust/model/detail/sha256.hpp>
#include <piecrust/model/model_paths.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace piecrust;
using Tiny = testing::Tiny;

namespace {

EngineOptions opts(std::size_t pages = 64) { return testing::engine_options(pages, 16); }
Tiny& tiny() { return testing::tiny_model(); }
// Same shape as tiny() (every ModelShape field equal), other weights: a fine-tune, say.
Tiny& tiny_other() {
  static Tiny model(tiny_llama_weights(4), testing::make_test_space());
  return model;
}
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }
std::vector<std::uint32_t> concat(std::vector<std::uint32_t> a, std::vector<std::uint32_t> const& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string hex(detail::Sha256::Digest const& d) { return ModelIdentity::hex(d); }
std::string sha256(std::string const& s) {
  detail::Sha256 h;
  h.update(s.data(), s.size());
  return hex(h.finish());
}

// Fills `tokens` into a new context, computes them (full pages are committed) and exports them as `name`.
Task<void> compute_and_export(Engine<Tiny>& e, Store& store, std::string name, std::vector<std::uint32_t> tokens) {
  auto ctx = e.create_context();
  ctx.fill(tokens);
  co_await ctx.flush();
  ctx.export_kv_pages(store, name);
}

// The logits after `tokens`, computed in context `ctx` (committed pages first: the last token goes in its own
// pass, so every full page of the rest is committed, and shared by content where the pool allows).
Task<std::vector<float>> logits_after(Context<Tiny>& ctx, std::vector<std::uint32_t> tokens) {
  ctx.fill(std::span(tokens).first(tokens.size() - 1));
  co_await ctx.flush();
  auto fwd = ctx.forward();
  fwd.input(std::span(tokens).last(1));
  auto const h = fwd.probe(0, Logits{});
  ForwardOutput o = co_await fwd.execute();
  auto const row = o.logits(h);
  co_return std::vector<float>(row.begin(), row.end());
}

// The logits after `tokens` in a fresh engine: what a context computes when nothing else is in the pool.
std::vector<float> clean_logits(std::vector<std::uint32_t> const& tokens) {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<std::vector<float>> {
    auto ctx = e.create_context();
    co_return co_await logits_after(ctx, tokens);
  };
  return e.block_on(prog(e));
}

// `genuine` with its records rewritten and its checksum recomputed: a forgery no checksum catches.
template <class Edit>
std::vector<std::uint8_t> forge(std::vector<std::uint8_t> const& genuine, Edit edit) {
  KvExport e = decode_kv_export(genuine);
  edit(e);
  return encode_kv_export(e);
}

std::vector<PageId> pages_of(PageTable const& t) { return {t.committed_pages().begin(), t.committed_pages().end()}; }

bool disjoint(std::vector<PageId> a, std::vector<PageId> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<PageId> both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  return both.empty();
}

// Everything an import may not change: the pool, the store's entries and another context's tokens.
struct Snapshot {
  PagePoolStats pool;
  std::vector<std::string> keys;
  std::vector<std::vector<std::uint8_t>> values;
  std::vector<TokenMeta> other_tokens;
  friend bool operator==(Snapshot const& a, Snapshot const& b) {
    return a.pool.free == b.pool.free && a.pool.used == b.pool.used && a.pool.shared == b.pool.shared &&
           a.pool.content_indexed == b.pool.content_indexed && a.keys == b.keys && a.values == b.values &&
           a.other_tokens == b.other_tokens;
  }
};
Snapshot snapshot(Engine<Tiny>& e, Store const& store, Context<Tiny> const& other) {
  Snapshot s{e.pool().stats(), store.list(), {}, other.page_table().tokens()};
  for (auto const& k : s.keys) s.values.push_back(*store.get(k));
  return s;
}

// A small byte-level tokenizer (its vocabulary need not match the tiny model: only its spec is hashed).
TokenizerSpec tiny_tokenizer_spec() {
  TokenizerSpec s;
  s.model = TokenizerModel::gpt2;
  s.pre = "smollm";
  s.tokens = {"<|endoftext|>"};
  s.types = {TokenType::control};
  auto const& bl = detail::ByteLevel::get();
  for (int b = 0; b < 256; ++b) {
    s.tokens.push_back(bl.byte_to_text[b]);
    s.types.push_back(TokenType::normal);
  }
  s.merges = {"h e", "l l"};
  s.tokens.push_back("he");
  s.tokens.push_back("ll");
  s.types.push_back(TokenType::normal);
  s.types.push_back(TokenType::normal);
  s.eos = 0;
  return s;
}

}  // namespace

TEST_CASE("kv trust: SHA-256 matches FIPS 180-4's examples, however the input is split", "[kv_trust][identity]") {
  CHECK(sha256("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string const million(1000000, 'a');
  CHECK(sha256(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  for (std::size_t chunk : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 1000u}) {
    INFO("chunk " << chunk);
    detail::Sha256 h;
    for (std::size_t i = 0; i < million.size(); i += chunk) h.update(million.data() + i, std::min(chunk, million.size() - i));
    CHECK(hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
}

TEST_CASE("kv trust: the identity covers every weight byte, the configuration and the tokenizer", "[kv_trust][identity]") {
  auto const base = model_identity(tiny().weights());
  CHECK(model_identity(tiny().weights()) == base);           // deterministic
  CHECK(model_identity(tiny_llama_weights(3)).weights == base.weights);  // the same weights built again
  CHECK(model_identity(tiny_other().weights()).weights != base.weights);  // same shape, other weights
  CHECK(base.to_string().starts_with("weights=sha256:"));
  CHECK(base.to_string().ends_with(";tokenizer=none"));

  // One byte of one tensor (the last layer's down projection) changes the identity.
  {
    auto w = tiny_llama_weights(3);
    auto& down = w.layers.back().down;
    std::vector<std::byte> copy(static_cast<std::byte const*>(down.data),
                                static_cast<std::byte const*>(down.data) + down.size_bytes());  // [rows][row_bytes]
    copy[copy.size() / 2] ^= std::byte{1};
    down.data = copy.data();
    CHECK(model_identity(w).weights != base.weights);
  }
  // So does a configuration field that changes the K/V but no tensor (RoPE's base frequency).
  {
    auto w = tiny_llama_weights(3);
    w.config.rope.theta = 500000.0f;
    CHECK(model_identity(w).weights != base.weights);
  }
  // The tokenizer: none, one, and one whose merges differ are three identities with the same weights.
  Tokenizer const tok(tiny_tokenizer_spec());
  auto spec = tiny_tokenizer_spec();
  std::swap(spec.merges[0], spec.merges[1]);
  Tokenizer const reranked(spec);
  auto const with = model_identity(tiny().weights(), &tok);
  REQUIRE(with.tokenizer.has_value());
  CHECK(with.weights == base.weights);
  CHECK(with != base);
  CHECK(model_identity(tiny().weights(), &reranked) != with);
  CHECK(model_identity(tiny().weights(), &tok) == with);
}

TEST_CASE("kv trust: an export from another model of the same shape is refused, naming both identities",
          "[kv_trust][errors]") {
  MemoryStore store;
  Engine<Tiny> src(tiny(), opts());
  src.block_on(compute_and_export(src, store, "x", prompt(1, 40)));
  REQUIRE(tiny().shape().num_layers == tiny_other().shape().num_layers);
  REQUIRE(tiny().shape().vocab_size == tiny_other().shape().vocab_size);

  Engine<Tiny> other(tiny_other(), opts());
  auto bystander = other.create_context();
  bystander.fill(prompt(2, 20));
  other.block_on([](Context<Tiny>& c) -> Task<void> { co_await c.flush(); }(bystander));
  auto const before = snapshot(other, store, bystander);
  std::string const mine = src.model_identity().to_string();
  std::string const theirs = other.model_identity().to_string();
  REQUIRE(mine != theirs);
  try {
    (void)Context<Tiny>::from_imported(other, store, "x");
    FAIL("a foreign model's export was imported");
  } catch (InvalidArgument const& e) {
    std::string const what = e.what();
    CHECK(what.find("model") != std::string::npos);
    CHECK(what.find(mine) != std::string::npos);
    CHECK(what.find(theirs) != std::string::npos);
  }
  CHECK(snapshot(other, store, bystander) == before);

  // The label (EngineOptions::model_id) is bound too, and an engine's own identity imports fine.
  EngineOptions labelled = opts();
  labelled.model_id = "staging";
  Engine<Tiny> same_weights_other_label(tiny(), labelled);
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(same_weights_other_label, store, "x"), Catch::Contains(";label=staging"));
  CHECK_THROWS_AS(Context<Tiny>::from_imported(same_weights_other_label, store, "x"), InvalidArgument);
  Engine<Tiny> same(tiny(), opts());
  CHECK(Context<Tiny>::from_imported(same, store, "x").seq_len() == 32);

  // A precomputed identity is used as given (engines sharing a model hash it once).
  EngineOptions given = opts();
  given.identity = model_identity(tiny().weights());
  Engine<Tiny> pre(tiny(), given);
  CHECK(pre.model_identity() == src.model_identity());
  CHECK(Context<Tiny>::from_imported(pre, store, "x").seq_len() == 32);
}

TEST_CASE("kv trust: forged records with a valid checksum are refused with typed errors, changing nothing",
          "[kv_trust][errors]") {
  MemoryStore store;
  Engine<Tiny> e(tiny(), opts());
  e.block_on(compute_and_export(e, store, "genuine", prompt(3, 33)));  // 2 pages
  auto const genuine = *store.get("genuine");
  auto bystander = e.create_context();
  bystander.fill(prompt(4, 17));
  e.block_on([](Context<Tiny>& c) -> Task<void> { co_await c.flush(); }(bystander));

  struct Case {
    char const* what;
    std::vector<std::uint8_t> blob;
    std::vector<std::string> message;  // every piece must appear
  };
  std::size_t const ctx_len = tiny().shape().context_length;
  std::vector<Case> cases;
  cases.push_back({"token id beyond the vocabulary", forge(genuine, [](KvExport& x) { x.tokens[5].token = 99999; }),
                   {"token 5", "id 99999", "vocab = 512"}});
  cases.push_back({"token id = vocab", forge(genuine, [](KvExport& x) { x.tokens[31].token = 512; }),
                   {"token 31", "id 512", "vocab = 512"}});
  cases.push_back({"position near 2^32", forge(genuine, [](KvExport& x) { x.tokens[31].position = 0xFFFFFFF0u; }),
                   {"token 31", "position 4294967280", "context length 1024"}});
  cases.push_back({"position = context length",
                   forge(genuine, [&](KvExport& x) { x.tokens[0].position = static_cast<std::uint32_t>(ctx_len); }),
                   {"token 0", "position 1024", "context length 1024"}});
  // More tokens than the context holds, every position valid (they repeat).
  cases.push_back({"more tokens than the context length", forge(genuine, [&](KvExport& x) {
                     std::size_t const pages = ctx_len / 16 + 1;
                     x.header.num_pages = pages;
                     x.tokens.resize(pages * 16);
                     for (std::size_t i = 0; i < x.tokens.size(); ++i) {
                       x.tokens[i] = TokenMeta{static_cast<std::uint32_t>(i % 512), static_cast<std::uint32_t>(i % 1000)};
                     }
                     std::vector<std::uint8_t> const page(x.bytes.begin(), x.bytes.begin() + static_cast<std::ptrdiff_t>(x.bytes.size() / 2));
                     x.bytes.clear();
                     for (std::size_t p = 0; p < pages; ++p) x.bytes.insert(x.bytes.end(), page.begin(), page.end());
                   }),
                   {"1040 tokens", "context length 1024"}});
  for (Case const& c : cases) {
    INFO(c.what);
    store.set("forged", c.blob);
    auto const before = snapshot(e, store, bystander);
    try {
      (void)Context<Tiny>::from_imported(e, store, "forged");
      FAIL("imported");
    } catch (OutOfRange const& err) {
      for (auto const& piece : c.message) CHECK_THAT(err.what(), Catch::Contains(piece));
    }
    CHECK(snapshot(e, store, bystander) == before);
  }

  // A masked flag other than 0 or 1 (format), and K/V sizes whose product overflows 64 bits.
  auto raw = genuine;
  std::size_t const fields = 8 + 4 + 4 + e.model_identity().to_string().size() + 5 * 4;  // num_pages is next
  std::size_t const records = fields + 8 + 8;  // first record, after num_pages and window_released_pages
  raw[records + 8] = 2;
  auto const resum = [](std::vector<std::uint8_t> b) {
    std::uint64_t const sum = detail::fnv1a(std::span(b).first(b.size() - 8));
    for (std::size_t i = 0; i < 8; ++i) b[b.size() - 8 + i] = static_cast<std::uint8_t>(sum >> (8 * i));
    return b;
  };
  store.set("forged", resum(raw));
  auto const before = snapshot(e, store, bystander);
  CHECK_THROWS_AS(Context<Tiny>::from_imported(e, store, "forged"), FormatError);
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "forged"), Catch::Contains("token record 0 has masked = 2"));
  raw = genuine;
  std::size_t const head_dim_at = 8 + 4 + 4 + e.model_identity().to_string().size() + 3 * 4;
  for (std::size_t i = 0; i < 8; ++i) raw[head_dim_at + i] = 0xff;  // head_dim and element_size = 2^32 - 1
  store.set("forged", resum(raw));
  CHECK_THROWS_AS(Context<Tiny>::from_imported(e, store, "forged"), FormatError);
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "forged"),
                    Catch::Contains("head_dim = 4294967295") && Catch::Contains("overflow"));
  CHECK(snapshot(e, store, bystander).pool.free == before.pool.free);
  CHECK(snapshot(e, store, bystander).other_tokens == before.other_tokens);

  // More window-released pages than pages (format).
  raw = genuine;
  raw[fields + 8] = 3;  // 2 pages
  store.set("forged", resum(raw));
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "forged"),
                    Catch::Contains("window_released_pages = 3 > num_pages = 2"));
  CHECK(snapshot(e, store, bystander).pool.free == before.pool.free);


  // A refused import does not consume a context id: later contexts draw the same random numbers.
  auto draws = [](Engine<Tiny>& eng) -> Task<std::vector<std::uint32_t>> {
    auto c = eng.create_context();
    c.fill(prompt(5, 8));
    co_return (co_await c.generate(samplers::top_k(TopK{50}, Temperature{1.0f}), max_len(8))).tokens;
  };
  Engine<Tiny> clean(tiny(), opts());
  (void)clean.create_context();  // as e did: compute_and_export's context and the bystander
  (void)clean.create_context();
  auto const expected = clean.block_on(draws(clean));
  CHECK(e.block_on(draws(e)) == expected);

  // Format version 1 (no window_released_pages) is still read: the same pages.
  raw = genuine;
  raw[8] = 1;
  raw.erase(raw.begin() + static_cast<std::ptrdiff_t>(fields + 8), raw.begin() + static_cast<std::ptrdiff_t>(fields + 16));
  store.set("v1", resum(raw));
  {
    auto const old = Context<Tiny>::from_imported(e, store, "v1");
    auto const want = prompt(3, 33);
    CHECK(old.token_ids() == std::vector<std::uint32_t>(want.begin(), want.begin() + 32));
  }
}

TEST_CASE("kv trust: forged K/V claiming a computed prefix never reaches another context", "[kv_trust][sharing]") {
  auto const prefix = prompt(11, 32);        // two full pages
  auto const continuation = prompt(12, 16);  // a third page
  auto const question = prompt(13, 5);

  // The forgery: K/V computed from other tokens, relabelled as the prefix, with a valid checksum.
  MemoryStore store;
  {
    Engine<Tiny> e(tiny(), opts());
    e.block_on(compute_and_export(e, store, "other", prompt(14, 32)));
  }
  store.set("forged", forge(*store.get("other"), [&](KvExport& x) {
              for (std::size_t i = 0; i < prefix.size(); ++i) x.tokens[i].token = prefix[i];
            }));

  // Each scenario runs the same programs twice, with and without the forged import, in fresh engines: the
  // other contexts' logits must be bit for bit the same (same passes, so same rounding).
  struct Observed {
    std::vector<float> c, d, misled;  // [vocab] each
    std::vector<PageId> a_pages, c_pages, d_pages, forged_pages;
  };

  SECTION("imported before any context computes the prefix (the order of the reported attack)") {
    auto run = [&](bool with_import) {
      Engine<Tiny> e(tiny(), opts());
      Observed o;
      auto prog = [&](Engine<Tiny>& e) -> Task<void> {
        std::optional<Context<Tiny>> forged;
        if (with_import) {
          forged.emplace(Context<Tiny>::from_imported(e, store, "forged"));
          CHECK(e.pool().stats().content_indexed == 0);  // nothing others could find
          auto own_choice = forged->fork();  // the forgery does mislead the program that imported it
          o.misled = co_await logits_after(own_choice, question);
        }
        auto c = e.create_context();  // computes the prefix itself
        o.c = co_await logits_after(c, concat(prefix, question));
        if (forged) {  // pages computed on top of the forged ones
          forged->fill(continuation);
          co_await forged->flush();
          REQUIRE(forged->page_table().committed_pages().size() == 3);
          o.forged_pages = pages_of(forged->page_table());
        }
        auto d = e.create_context();
        o.d = co_await logits_after(d, concat(concat(prefix, continuation), question));
        o.c_pages = pages_of(c.page_table());
        o.d_pages = pages_of(d.page_table());
      };
      e.block_on(prog(e));
      return o;
    };
    Observed const clean = run(false);
    Observed const attacked = run(true);
    CHECK(attacked.misled != clean.c);
    CHECK(attacked.c == clean.c);
    CHECK(attacked.d == clean.d);
    CHECK(disjoint(attacked.c_pages, attacked.forged_pages));
    CHECK(disjoint(attacked.d_pages, attacked.forged_pages));
    // Computed pages still share with each other: d's prefix pages are c's.
    REQUIRE(attacked.d_pages.size() == 3);
    CHECK(std::equal(attacked.c_pages.begin(), attacked.c_pages.end(), attacked.d_pages.begin()));
  }

  SECTION("imported after context A computed the prefix: A's pages are neither replaced nor aliased") {
    auto run = [&](bool with_import) {
      Engine<Tiny> e(tiny(), opts());
      Observed o;
      auto prog = [&](Engine<Tiny>& e) -> Task<void> {
        auto a = e.create_context();
        a.fill(prefix);
        co_await a.flush();
        o.a_pages = pages_of(a.page_table());
        std::optional<Context<Tiny>> forged;
        if (with_import) {
          forged.emplace(Context<Tiny>::from_imported(e, store, "forged"));
          o.forged_pages = pages_of(forged->page_table());
          CHECK(pages_of(a.page_table()) == o.a_pages);
        }
        auto c = e.create_context();
        o.c = co_await logits_after(c, concat(prefix, question));
        o.c_pages = pages_of(c.page_table());
      };
      e.block_on(prog(e));
      return o;
    };
    Observed const clean = run(false);
    Observed const attacked = run(true);
    CHECK(attacked.c == clean.c);
    CHECK(disjoint(attacked.forged_pages, attacked.a_pages));
    CHECK(attacked.c_pages == attacked.a_pages);  // C shares A's computed pages, as without the import
  }

  SECTION("KvTrust::trusted: a trusted store's pages are shared like computed ones") {
    Engine<Tiny> e(tiny(), opts());
    auto prog = [&](Engine<Tiny>& e) -> Task<void> {
      // A genuine entry, trusted, shares A's physical pages; untrusted, it gets its own.
      auto a = e.create_context();
      a.fill(prefix);
      co_await a.flush();
      a.export_kv_pages(store, "prefix");
      auto const trusted = Context<Tiny>::from_imported(e, store, "prefix", KvTrust::trusted);
      CHECK(pages_of(trusted.page_table()) == pages_of(a.page_table()));
      auto const untrusted = Context<Tiny>::from_imported(e, store, "prefix");
      CHECK(disjoint(pages_of(untrusted.page_table()), pages_of(a.page_table())));
    };
    e.block_on(prog(e));
    // Trust is the caller's promise: a trusted forgery imported first is what later contexts share.
    Engine<Tiny> f(tiny(), opts());
    auto fooled = [&](Engine<Tiny>& f) -> Task<void> {
      auto forged = Context<Tiny>::from_imported(f, store, "forged", KvTrust::trusted);
      auto c = f.create_context();
      auto const got = co_await logits_after(c, concat(prefix, question));
      CHECK(got != clean_logits(concat(prefix, question)));
      CHECK(pages_of(c.page_table()) == pages_of(forged.page_table()));
    };
    f.block_on(fooled(f));
  }
}

TEST_CASE("kv trust: content sharing is exact and stops after masked slots", "[kv_trust][sharing][pages]") {
  auto make_tokens = [](std::uint32_t first_pos, std::size_t n) {
    std::vector<TokenMeta> t(n);
    for (std::size_t i = 0; i < n; ++i) t[i] = TokenMeta{static_cast<std::uint32_t>(100 + i), first_pos + static_cast<std::uint32_t>(i)};
    return t;
  };
  PagePool pool(32, 4);
  auto committed = [&](std::vector<TokenMeta> const& tokens, PageSharing sharing = PageSharing::by_content) {
    auto t = std::make_unique<PageTable>(pool);
    t->reserve_working_pages(tokens.size() / 4);
    t->append_working_tokens(tokens);
    t->commit_working_pages(tokens.size() / 4, sharing);
    return t;
  };
  auto const a = committed(make_tokens(0, 8));
  auto const b = committed(make_tokens(0, 8));
  CHECK(pages_of(*a) == pages_of(*b));  // equal prefixes share

  // Private pages are neither found nor matched, and neither are pages committed after them.
  std::size_t const indexed = pool.stats().content_indexed;
  auto const p = committed(make_tokens(0, 8), PageSharing::private_pages);
  CHECK(disjoint(pages_of(*p), pages_of(*a)));
  CHECK(pool.stats().content_indexed == indexed);
  auto const c = committed(make_tokens(0, 8));
  CHECK(pages_of(*c) == pages_of(*a));

  // The same page content after a different physical page is another entry, even when its tokens are equal.
  p->reserve_working_pages(1);
  auto next = make_tokens(8, 4);
  p->append_working_tokens(next);
  p->commit_working_pages(1);
  auto const d = committed(make_tokens(0, 12));
  CHECK(d->committed_pages()[2] != p->committed_pages()[2]);

  // After mask_token_range, the next pages are found only by the table's own forks: later passes skip the
  // masked slots, so their K/V is not what another table computes for the same tokens.
  auto m = committed(make_tokens(0, 8));
  m->mask_token_range(0, 2, true);
  auto f = m->fork();
  for (PageTable* t : {m.get(), &f.table}) {
    t->reserve_working_pages(1);
    t->append_working_tokens(next);
    t->commit_working_pages(1);
  }
  CHECK(m->committed_pages()[2] != d->committed_pages()[2]);
  CHECK(m->committed_pages()[2] == f.table.committed_pages()[2]);

  // Serials name one allocation: a page id freed and handed out again gets a new one.
  PageId const id = pool.allocate();
  std::uint64_t const first = pool.serial(id);
  pool.release(id);
  PageId const again = pool.allocate();
  REQUIRE(again == id);
  CHECK(pool.serial(again) != first);
  pool.release(again);
  CHECK_THROWS_AS(pool.serial(31), InvalidState);  // a free page has none
}

TEST_CASE("kv trust: the real model's identity, and what hashing it costs", "[kv_trust][identity][model-file]") {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const file = std::make_shared<GgufFile const>(GgufFile::open(path));
  auto const weights = LlamaWeights::from_gguf(file);
  auto const tok = Tokenizer::from_gguf(*file);
  auto const t0 = std::chrono::steady_clock::now();
  auto const id = model_identity(weights, &tok);
  double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN("model_identity of " << path << ": " << s << " s");
  CHECK(model_identity(LlamaWeights::from_gguf(file), &tok) == id);
  CHECK(id.weights != model_identity(tiny().weights()).weights);
  CHECK(id.tokenizer.has_value());
}

TEST_CASE("kv trust: a forged SQLite store gives typed errors", "[kv_trust][store][errors]") {
  auto const dir = std::filesystem::temp_directory_path();
  auto const tag = std::to_string(std::random_device{}());
  // Not a database at all.
  auto const junk = (dir / ("piecrust-junk-" + tag + ".db")).string();
  {
    std::ofstream out(junk, std::ios::binary);
    out << std::string(4096, 'x');
  }
  CHECK_THROWS_AS(SqliteStore(junk), FormatError);
  CHECK_THROWS_WITH(SqliteStore(junk), Catch::Contains(junk));
  std::filesystem::remove(junk);
  // A directory cannot be opened as a database.
  CHECK_THROWS_AS(SqliteStore(dir.string()), InvalidArgument);

  // A database written by someone else: its own schema without NOT NULL, a NULL value, a NULL key, a text value.
  auto const forged = (dir / ("piecrust-forged-" + tag + ".db")).string();
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(forged.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "CREATE TABLE piecrust_store (key TEXT PRIMARY KEY, value);"
                         "INSERT INTO piecrust_store VALUES ('null', NULL), (NULL, x'00'), ('text', 'PCKVPAGE');",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  {
    SqliteStore store(forged);
    CHECK(store.list() == std::vector<std::string>{"null", "text"});
    CHECK(store.get("null") == std::vector<std::uint8_t>{});
    Engine<Tiny> e(tiny(), opts());
    CHECK_THROWS_AS(Context<Tiny>::from_imported(e, store, "null"), FormatError);
    CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "text"), Catch::Contains("truncated"));
    CHECK(e.pool().free_count() == e.pool().num_pages());
  }
  std::filesystem::remove(forged);
}
