#pragma once
// Command-line plumbing the example programs share: `--model FILE.gguf` (default: piecrust::default_model_path())
// or `--tiny` (the tiny random Llama, no file, token ids instead of text), `--seed`, `--threads`, plus each
// example's own options. Loads the model, tokenizer and chat template the way examples/chat does.

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/model/tiny_llama.hpp>
#include <piecrust/runtime.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace piecrust::examples {

using Llama = LlamaModel<Host>;

struct CommonOptions {
  std::string model = default_model_path();
  bool tiny = false;
  std::uint64_t seed = 0;
  std::size_t threads = 0;  // 0 = one per hardware thread
};

/// Parses the common options and the example's own `--name value` options (`extra`: name -> setter). Flags
/// that take no value go in `flags`. Exits with a usage message on anything else.
inline CommonOptions parse_common(int argc, char** argv, char const* program, char const* usage_extra,
                                  std::map<std::string, std::function<void(std::string const&)>> extra = {},
                                  std::map<std::string, std::function<void()>> flags = {}) {
  CommonOptions o;
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s [--model FILE.gguf | --tiny] [--seed S] [--threads N]%s\n", program, usage_extra);
  };
  for (int i = 1; i < argc; ++i) {
    std::string const a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", program, a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--model") o.model = value();
      else if (a == "--tiny") o.tiny = true;
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--threads") o.threads = std::stoul(value());
      else if (a == "--help" || a == "-h") {
        usage();
        std::exit(0);
      } else if (auto const f = flags.find(a); f != flags.end()) f->second();
      else if (auto const e = extra.find(a); e != extra.end()) e->second(value());
      else {
        std::fprintf(stderr, "%s: unknown option %s\n", program, a.c_str());
        usage();
        std::exit(2);
      }
    } catch (std::logic_error const&) {
      std::fprintf(stderr, "%s: bad value for %s\n", program, a.c_str());
      std::exit(2);
    }
  }
  return o;
}

/// The model an example runs on: the GGUF model with its tokenizer and chat template, or the tiny random Llama.
struct LoadedModel {
  std::shared_ptr<GgufFile const> file;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat;
  std::unique_ptr<Llama> model;
  std::string name;

  [[nodiscard]] bool has_text() const { return tokenizer.has_value(); }
  [[nodiscard]] Tokenizer const* tokenizer_ptr() const { return tokenizer ? &*tokenizer : nullptr; }

  /// Text -> ids (special-token markers parsed). Only with a tokenizer.
  [[nodiscard]] std::vector<std::uint32_t> encode(std::string const& text) const {
    auto const ids = tokenizer->encode(text, {.add_special = false, .parse_special = true});
    return {ids.begin(), ids.end()};
  }

  /// A chat prompt (system + user turns and the assistant's generation prompt), as ids.
  [[nodiscard]] std::vector<std::uint32_t> chat_prompt(std::string const& system, std::string const& user) const {
    std::string text = chat->begin();
    if (!system.empty()) text += chat->message("system", system);
    text += chat->message("user", user) + chat->generation_prompt();
    return encode(text);
  }

  /// Ids decoded to text (special tokens left out), or the ids themselves without a tokenizer.
  [[nodiscard]] std::string show(std::span<std::uint32_t const> ids) const {
    if (!tokenizer) {
      std::string s = "[";
      for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
      return s + "]";
    }
    std::vector<TokenId> t(ids.begin(), ids.end());
    return tokenizer->decode(t);
  }

  /// Every end-of-generation id of the vocabulary (EOS, EOT, <|im_end|>, ...); empty for the tiny model.
  [[nodiscard]] std::vector<std::uint32_t> eos_ids() const {
    std::vector<std::uint32_t> ids;
    if (!tokenizer) return ids;
    for (std::size_t i = 0; i < tokenizer->vocab_size(); ++i) {
      if (tokenizer->is_eog(static_cast<TokenId>(i))) ids.push_back(static_cast<std::uint32_t>(i));
    }
    return ids;
  }

  /// `stop` or an end-of-generation id.
  [[nodiscard]] StopCondition stop(std::size_t max_tokens) const {
    auto const eos = eos_ids();
    return eos.empty() ? max_len(max_tokens) : max_len(max_tokens) || ends_with_any(eos);
  }
};

/// Loads the model the options name. Exits with a hint when the GGUF file is missing.
inline LoadedModel load_model(CommonOptions const& o, char const* program) {
  LoadedModel m;
  Host const space = o.threads == 0 ? Host{} : Host{o.threads};
  if (o.tiny) {
    m.model = std::make_unique<Llama>(tiny_llama_weights(3), space);
    m.name = "tiny random Llama (vocabulary 512)";
    return m;
  }
  if (!std::filesystem::exists(o.model)) {
    std::fprintf(stderr, "%s: model file %s is missing: %s (or run with --tiny)\n", program, o.model.c_str(),
                 fetch_model_hint);
    std::exit(1);
  }
  m.file = std::make_shared<GgufFile const>(GgufFile::open(o.model));
  m.tokenizer.emplace(Tokenizer::from_gguf(*m.file));
  m.chat.emplace(ChatTemplate::from_gguf(*m.file));
  m.model = std::make_unique<Llama>(LlamaWeights::from_gguf(m.file), space);
  m.name = m.file->get_or<std::string>("general.name", o.model);
  return m;
}

/// Engine options for the examples: `pages` pages of 16 tokens.
inline EngineOptions engine_options(CommonOptions const& o, std::size_t pages = 1024) {
  EngineOptions e;
  e.num_pages = pages;
  e.page_size = 16;
  e.seed = o.seed;
  return e;
}

}  // namespace piecrust::examples
