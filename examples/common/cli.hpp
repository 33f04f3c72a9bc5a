#pragma once
// Command-line plumbing the example programs share: `--model FILE.gguf` (default: piecrust::default_model_path())
// or `--tiny` (the tiny random Llama, no file, token ids instead of text), `--seed`, `--threads`, `--raw` /
// `--chat` (the prompt style, below), plus each example's own options. Every number is parsed strictly and
// bounded (integer(), real()); a bad command line exits with status 2 and a message naming the option and the
// value. Loads the model, tokenizer and chat template the way examples/chat does.
//
// Prompt style. An instruction-tuned model answers a chat turn; a base model was never trained on chat markup
// and does better continuing a text. A GGUF file carries tokenizer.chat_template when its model was tuned to
// chat (SmolLM2-135M-Instruct does; the base Gemma 3 270M does not), so by default the examples write a chat
// turn when the file has a template and a plain completion prompt when it has none. `--chat` and `--raw`
// force one style.

#include <piecrust/backends/host.hpp>
#include "common/host_model.hpp"

#include <piecrust/model.hpp>
#include <piecrust/model/tiny_llama.hpp>
#include <piecrust/runtime.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

namespace piecrust::examples {

// ---- strict values ----
// A command-line number is the whole argument, in range, or refused: "12abc", "-1" for a count, "4294967297"
// for a 32-bit value, "nan" or "1e999" are errors naming the option and the text, never read as something else.

/// The integer `text` spells, in [lo, hi]. Throws InvalidArgument (not a whole number: sign, spaces, trailing
/// characters) or OutOfRange (past [lo, hi] or the type), both naming `option` and `text`.
template <std::integral T>
T parse_integer(std::string_view option, std::string_view text, std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
  char const* const last = text.data() + text.size();
  T value{};
  auto const [end, ec] = std::from_chars(text.data(), last, value);
  if (ec == std::errc::invalid_argument || end != last || text.empty()) {
    // "-1" for a count is a whole number, only out of range: say so rather than "not a number".
    bool const negative = std::is_unsigned_v<T> && text.size() > 1 && text.front() == '-' &&
                          std::all_of(text.begin() + 1, text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!negative) piecrust::detail::fail<InvalidArgument>(option, " = \"", text, "\" is not a whole number");
  }
  if (ec != std::errc{} || value < lo || value > hi) {
    piecrust::detail::fail<OutOfRange>(option, " = ", text, " is out of range: it must be in [", +lo, ", ", +hi, "]");
  }
  return value;
}

/// Whether a real option's lower bound is itself allowed.
enum class Lower { closed, open };

/// The finite real `text` spells, in [lo, hi] (or (lo, hi] with Lower::open). Throws InvalidArgument (not a
/// number, or not finite) or OutOfRange (past the range), both naming `option` and `text`.
inline double parse_real(std::string_view option, std::string_view text, double lo, double hi, Lower lower = Lower::closed) {
  char const* const last = text.data() + text.size();
  double value = 0;
  auto const [end, ec] = std::from_chars(text.data(), last, value);
  if (ec == std::errc::invalid_argument || end != last || text.empty() || (ec == std::errc{} && !std::isfinite(value))) {
    piecrust::detail::fail<InvalidArgument>(option, " = \"", text, "\" is not a finite number");
  }
  bool const below = lower == Lower::open ? !(value > lo) : !(value >= lo);
  if (ec != std::errc{} || below || value > hi) {
    piecrust::detail::fail<OutOfRange>(option, " = ", text, " is out of range: it must be in ", lower == Lower::open ? "(" : "[",
                             lo, ", ", hi, "]");
  }
  return value;
}

/// Sets an option's variable from its value; `option` is the name it was given under.
using OptionSetter = std::function<void(std::string const& option, std::string const& value)>;

/// An integer option in [lo, hi]; the variable changes only when the value is valid.
template <std::integral T>
OptionSetter integer(T& out, std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
  return [&out, lo, hi](std::string const& option, std::string const& value) { out = parse_integer<T>(option, value, lo, hi); };
}

/// A real option in [lo, hi] (or (lo, hi]); the variable changes only when the value is valid.
template <std::floating_point T>
OptionSetter real(T& out, double lo, double hi, Lower lower = Lower::closed) {
  return [&out, lo, hi, lower](std::string const& option, std::string const& value) {
    out = static_cast<T>(parse_real(option, value, lo, hi, lower));
  };
}

/// A text option (any string).
inline OptionSetter text(std::string& out) {
  return [&out](std::string const&, std::string const& value) { out = value; };
}

/// An example's prompt in both styles: the message an instruction-tuned model answers, and the text a base
/// model continues toward the same kind of answer.
struct Prompt {
  std::string message;
  std::string completion;
};

/// A prompt option: the user's text is both the message and the text to complete.
inline OptionSetter text(Prompt& out) {
  return [&out](std::string const&, std::string const& value) { out = {value, value}; };
}

/// The most threads --threads accepts: four per hardware thread (more only adds contention; far more makes
/// thread creation itself fail).
inline std::size_t max_threads() { return 4 * std::max<std::size_t>(1, std::thread::hardware_concurrency()); }

/// The longest generation an example's --max-tokens or --steps accepts (the model's context ends it sooner).
inline constexpr std::size_t max_generation = 65536;

// ---- the common options ----

/// How prompts are written: from the file (a chat turn when it carries a chat template), or forced.
enum class PromptStyle { automatic, chat, completion };

struct CommonOptions {
  std::string model = default_model_path();
  PromptStyle style = PromptStyle::automatic;  // --chat / --raw
  bool tiny = false;
  std::uint64_t seed = 0;
  std::size_t threads = 0;  // 0 = one per hardware thread (the default; --threads takes 1..max_threads())
  bool help = false;        // --help was given
};

/// Parses `args` (argv without the program name): the common options, the example's own `--name value`
/// options (`extra`) and its flags without a value (`flags`). Throws InvalidArgument for an unknown option or a
/// missing value, and whatever a setter throws for a bad value (the message names the option and the value).
inline CommonOptions parse_common_args(std::span<char const* const> args,
                                       std::map<std::string, OptionSetter> const& extra = {},
                                       std::map<std::string, std::function<void()>> const& flags = {}) {
  CommonOptions o;
  std::map<std::string, OptionSetter> setters = extra;
  setters.emplace("--model", text(o.model));
  setters.emplace("--seed", integer(o.seed, 0, std::numeric_limits<std::uint64_t>::max()));
  setters.emplace("--threads", integer(o.threads, 1, max_threads()));
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string const a = args[i];
    if (a == "--tiny") {
      o.tiny = true;
    } else if (a == "--raw" || a == "--chat") {
      PromptStyle const s = a == "--raw" ? PromptStyle::completion : PromptStyle::chat;
      if (o.style != PromptStyle::automatic && o.style != s) {
        piecrust::detail::fail<InvalidArgument>("--raw and --chat exclude each other");
      }
      o.style = s;
    } else if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (auto const f = flags.find(a); f != flags.end()) {
      f->second();
    } else if (auto const s = setters.find(a); s != setters.end()) {
      if (i + 1 >= args.size()) piecrust::detail::fail<InvalidArgument>(a, " needs a value");
      s->second(a, args[++i]);
    } else {
      piecrust::detail::fail<InvalidArgument>("unknown option ", a);
    }
  }
  return o;
}

/// parse_common_args for main(): prints the error and the usage and exits with status 2 on a bad command
/// line, prints the usage and exits with 0 for --help.
inline CommonOptions parse_common(int argc, char** argv, char const* program, char const* usage_extra,
                                  std::map<std::string, OptionSetter> const& extra = {},
                                  std::map<std::string, std::function<void()>> const& flags = {}) {
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s [--model FILE.gguf | --tiny] [--raw | --chat] [--seed S] [--threads N]%s\n", program,
                 usage_extra);
  };
  try {
    CommonOptions o = parse_common_args(std::span<char const* const>(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0)),
                                        extra, flags);
    if (o.help) {
      usage();
      std::exit(0);
    }
    return o;
  } catch (Error const& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    usage();
    std::exit(2);
  }
}

/// The model an example runs on: the GGUF model with its tokenizer and chat template, or the tiny random Llama.
struct LoadedModel {
  std::shared_ptr<GgufFile const> file;
  std::optional<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat;
  std::unique_ptr<Llama> model;
  std::string name;
  bool completion = false;  // prompts are plain text to continue, not chat turns (see "Prompt style" above)

  [[nodiscard]] bool has_text() const { return tokenizer.has_value(); }
  [[nodiscard]] Tokenizer const* tokenizer_ptr() const { return tokenizer ? &*tokenizer : nullptr; }

  /// Text -> ids, as plain text (control-token markers in it stay text). Only with a tokenizer.
  [[nodiscard]] std::vector<std::uint32_t> encode(std::string const& text) const {
    auto const ids = tokenizer->encode(text, {.add_special = false, .parse_special = false});
    return {ids.begin(), ids.end()};
  }

  /// Chat messages as ids: the conversation's opening when `open`, each message, then the assistant's
  /// generation prompt when `generation_prompt`. As spans, so that only the template's markup becomes control
  /// tokens, never the messages' text.
  [[nodiscard]] std::vector<std::uint32_t> chat_ids(std::vector<ChatMessage> const& messages, bool open,
                                                    bool generation_prompt) const {
    std::vector<TextSpan> parts;
    if (open && !chat->begin_markup().empty()) parts.push_back({chat->begin_markup(), true});
    for (auto const& msg : messages) chat->append_message(parts, msg.role, msg.content);
    if (generation_prompt) parts.push_back({chat->generation_prompt_markup(), true});
    auto const ids = tokenizer->encode_spans(parts);
    return {ids.begin(), ids.end()};
  }

  /// A chat prompt (system + user turns and the assistant's generation prompt), as ids.
  [[nodiscard]] std::vector<std::uint32_t> chat_prompt(std::string const& system, std::string const& user) const {
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.push_back({"user", user});
    return chat_ids(messages, true, true);
  }

  /// The prompt as ids, in this model's style: `system` and the message as a chat turn followed by the
  /// assistant's generation prompt; or BOS (where the vocabulary starts a text with one) and `system`, a blank
  /// line and the completion text, as plain text.
  [[nodiscard]] std::vector<std::uint32_t> prompt(Prompt const& p, std::string const& system = {}) const {
    if (!completion) return chat_prompt(system, p.message);
    return text_ids(system.empty() ? p.completion : system + "\n\n" + p.completion, true);
  }

  /// Plain text as ids, after BOS when `first` and the vocabulary starts a text with one.
  [[nodiscard]] std::vector<std::uint32_t> text_ids(std::string const& text, bool first) const {
    std::vector<std::uint32_t> ids;
    if (first && tokenizer->adds_bos() && tokenizer->bos()) ids.push_back(static_cast<std::uint32_t>(*tokenizer->bos()));
    for (std::uint32_t const id : encode(text)) ids.push_back(id);
    return ids;
  }

  /// Ids decoded to text (special tokens and a final line end left out), or the ids themselves without a
  /// tokenizer.
  [[nodiscard]] std::string show(std::span<std::uint32_t const> ids) const {
    if (!tokenizer) {
      std::string s = "[";
      for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
      return s + "]";
    }
    std::vector<TokenId> t(ids.begin(), ids.end());
    std::string s = tokenizer->decode(t);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
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

  /// Every id whose bytes hold a line end; empty for the tiny model.
  [[nodiscard]] std::vector<std::uint32_t> newline_ids() const {
    std::vector<std::uint32_t> ids;
    if (!tokenizer) return ids;
    for (std::size_t i = 0; i < tokenizer->vocab_size(); ++i) {
      if (tokenizer->token_to_bytes(static_cast<TokenId>(i)).find('\n') != std::string::npos) {
        ids.push_back(static_cast<std::uint32_t>(i));
      }
    }
    return ids;
  }

  /// The ids that end a one-line answer: end-of-generation, and for a completion prompt also a line end (a
  /// base model does not stop after its answer; it goes on with the next line of the text).
  [[nodiscard]] std::vector<std::uint32_t> answer_end_ids() const {
    auto ids = eos_ids();
    if (completion) {
      for (std::uint32_t const id : newline_ids()) ids.push_back(id);
    }
    return ids;
  }

  /// stop() for a one-line answer: also at a line end after a completion prompt (answer_end_ids).
  [[nodiscard]] StopCondition answer_stop(std::size_t max_tokens) const {
    auto const ids = answer_end_ids();
    return ids.empty() ? max_len(max_tokens) : max_len(max_tokens) || ends_with_any(ids);
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
  m.completion = o.style == PromptStyle::completion ||
                 (o.style == PromptStyle::automatic && m.file->get_or<std::string>("tokenizer.chat_template", "").empty());
  if (m.completion) {
    // A completion prompt needs no template: one the file's family lacks (or an unknown one) is no error here.
    try {
      m.chat.emplace(ChatTemplate::from_gguf(*m.file));
    } catch (Unsupported const&) {
    }
    if (o.style == PromptStyle::automatic) {
      std::fprintf(stderr, "%s: the file has no chat template (a base model): prompts are text to complete"
                   " (--chat for chat turns)\n", program);
    }
  } else {
    m.chat.emplace(ChatTemplate::from_gguf(*m.file));
  }
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
