// piecrust vs llama.cpp on SmolLM2-135M-Instruct (Q4_1), from the committed reference data that
// tests/conformance/llama_cpp/generate_reference.py recorded with llama-cpp-python (no llama.cpp needed):
//  * token ids of >= 200 strings: exact;
//  * greedy continuations (32 tokens): agreement reported (tokens before the first divergence) and bounded;
//  * first-step top-5 logits: max |difference| reported and bounded.
// The reference was recorded with llama.cpp's KV cache in f32. With LlamaModelOptions::llama_cpp_attention
// (RoPE and attention in llama.cpp's exact arithmetic) piecrust's logits equal llama.cpp's bit for bit, so
// every greedy continuation must be the same ids and the top-5 logits must agree to the JSON's precision.
// piecrust's own kernels (the default) are checked too, with the bounds of their measured distance.
// By default the greedy/logit checks cover the first 2 prompts, 8 tokens each (seconds); PIECRUST_CONFORMANCE_FULL=1
// runs all 20 (tests/conformance/llama_cpp/run.sh does).

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/model/detail/sequence_runner.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace piecrust;
using Llama = LlamaModel<Host>;

namespace {

nlohmann::json const& reference() {
  static nlohmann::json const ref = [] {
    char const* env = std::getenv("PIECRUST_LLAMA_CPP_REFERENCE");
    std::string const path = env != nullptr && *env != '\0'
                                 ? std::string(env)
                                 : std::string(PIECRUST_SOURCE_DIR) + "/tests/conformance/llama_cpp/reference.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open the llama.cpp reference " + path);
    return nlohmann::json::parse(in);
  }();
  return ref;
}

std::string require_model() {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  return path;
}

bool full() {
  char const* e = std::getenv("PIECRUST_CONFORMANCE_FULL");
  return e != nullptr && std::string(e) == "1";
}

}  // namespace

TEST_CASE("llama.cpp conformance: token ids of the corpus", "[model][conformance][model-file]") {
  auto const file = GgufFile::open(require_model());
  auto const tok = Tokenizer::from_gguf(file);
  auto const& cases = reference().at("tokenize");
  REQUIRE(cases.size() >= 200);
  std::size_t same = 0;
  for (auto const& c : cases) {
    auto const text = c.at("text").get<std::string>();
    auto const want = c.at("ids").get<std::vector<TokenId>>();
    auto const got = tok.encode(text, {.add_special = false, .parse_special = true});
    INFO("text: \"" << text << "\"");
    CHECK(got == want);
    same += got == want;
  }
  WARN("tokenizer: " << same << " of " << cases.size() << " strings tokenize exactly as llama.cpp");
}

TEST_CASE("llama.cpp conformance: greedy continuations and first-step logits", "[model][conformance][model-file]") {
  auto const file = std::make_shared<GgufFile const>(GgufFile::open(require_model()));
  auto const tok = Tokenizer::from_gguf(*file);
  bool const exact = GENERATE(true, false);
  LlamaModelOptions options;
  options.llama_cpp_attention = exact;
  Llama m(LlamaWeights::from_gguf(file), Host{}, options);
  INFO((exact ? "llama.cpp arithmetic" : "piecrust kernels"));
  auto const& cases = reference().at("greedy");
  REQUIRE(cases.size() == 20);
  std::size_t const n = full() ? cases.size() : 2;
  std::size_t const max_tokens = full() ? 1000 : 8;
  std::size_t const V = m.shape().vocab_size;
  double worst = 0;
  std::size_t same_seq = 0, same_tokens = 0, total_tokens = 0;
  std::string report;
  for (std::size_t p = 0; p < n; ++p) {
    auto const& c = cases[p];
    auto const prompt = c.at("prompt_ids").get<std::vector<TokenId>>();
    auto want = c.at("ids").get<std::vector<TokenId>>();
    if (want.size() > max_tokens) want.resize(max_tokens);
    INFO("prompt " << p << ": " << c.at("prompt").get<std::string>());
    CHECK(tok.encode(c.at("prompt").get<std::string>(), {.parse_special = true}) == prompt);
    detail::SequenceRunner<Llama> run(m, 8, 16);
    auto const s = run.add_sequence();
    auto logits = run.step(s, prompt);
    double prompt_worst = 0;
    for (auto const& e : c.at("top5")) {
      auto const id = e.at(0).get<std::size_t>();
      REQUIRE(id < V);
      prompt_worst = std::max(prompt_worst, std::fabs(double{logits[id]} - e.at(1).get<double>()));
    }
    worst = std::max(worst, prompt_worst);
    std::size_t agree = 0;
    std::vector<TokenId> got;
    for (std::size_t i = 0; i < want.size(); ++i) {
      auto const next = static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      got.push_back(next);
      if (next != want[i]) break;  // count only up to the first difference
      ++agree;
      if (i + 1 < want.size()) logits = run.step(s, std::span(&got.back(), 1));
    }
    total_tokens += want.size();
    same_tokens += agree;
    same_seq += agree == want.size();
    report += detail::message("  prompt ", p, ": ", agree, "/", want.size(), " tokens agree, top-5 max |diff| ",
                              prompt_worst, "\n");
  }
  WARN((exact ? "llama.cpp arithmetic" : "piecrust kernels") << " greedy: " << same_seq << " of " << n << " continuations identical (" << same_tokens << " of " << total_tokens
                  << " tokens before any divergence); first-step top-5 logits: max |piecrust - llama.cpp| = " << worst
                  << "\n" << report);
  if (exact) {
    // Bit-identical logits: the only difference left is the decimal rounding of the JSON file.
    CHECK(worst < 1e-4);
    CHECK(same_seq == n);
  } else {
    // piecrust's kernels sum in another order and round RoPE angles in double; the 8-bit activation
    // rounding amplifies those last-bit differences (tests/conformance/README.md), so near-ties split
    // and which ones split moves with any change of summation order. The logits stay within bounds; the
    // share of agreeing tokens is a statistic, checked over all 20 prompts (543 tokens, 68% measured),
    // not over the quick run's 16 tokens, where one early near-tie decides everything.
    CHECK(worst < 1.0);
    if (full()) CHECK(same_tokens * 5 >= total_tokens * 2);  // >= 40% of the tokens before the first divergence
  }
}
