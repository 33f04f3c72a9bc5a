#pragma once
// piecrust-chat's command line and its context budget, apart from main() so that tests can drive them.
//
// Every number is parsed strictly (common/cli.hpp) and bounded; the bounds that depend on the model
// (--context against its context length, --top-k against its vocabulary) are checked by check_against_model
// before any KV memory is reserved. plan_turn decides what a turn does when the context runs out, so that a
// conversation that cannot fit ends instead of starting over for ever.

#include "common/cli.hpp"

#include <piecrust/runtime/sampler.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

namespace piecrust::examples::chat {

struct ChatOptions {
  std::string model = default_model_path();
  std::optional<std::string> prompt;
  std::optional<std::string> system;
  std::size_t max_tokens = 256;  // 1..max_generation; a turn also stops where the context is full
  // Sampling overrides; each unset one comes from the model file or the defaults (chat_sampling).
  std::optional<float> temperature;         // 0 = greedy; [0, 100]
  std::optional<std::uint32_t> top_k;       // 0 = off; at most the vocabulary
  std::optional<float> top_p;               // 1 = off; (0, 1]
  std::optional<float> min_p;               // 0 = off; [0, 1]
  std::optional<float> repeat_penalty;      // 1 = off; (0, 10]
  std::optional<std::uint32_t> repeat_last_n;  // tokens the penalty looks back over; 0 = off
  bool greedy = false;                      // --greedy: argmax, no penalties (the old default)
  std::uint64_t seed = 0;
  std::size_t threads = 0;       // 0 = one per hardware thread; --threads takes 1..max_threads()
  std::size_t context = 2048;    // tokens the conversation may hold: [min_context, the model's context length]
  bool raw = false;              // no chat template: the prompt is completed as plain text
  bool help = false;
};

/// The smallest --context: one prompt token and one generated token.
inline constexpr std::size_t min_context = 2;
/// The largest --context parsed before the model is known (its own length bounds it further).
inline constexpr std::size_t max_context = std::size_t{1} << 20;

inline constexpr char const* usage_text =
    "usage: piecrust-chat [--model FILE.gguf] [--prompt TEXT] [--system TEXT] [--max-tokens N]\n"
    "                     [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
    "                     [--repeat-last-n N] [--greedy] [--seed S] [--threads N] [--context N] [--raw]\n"
    "  --model        GGUF file (default: $PIECRUST_MODEL or the cache of scripts/fetch-model.sh)\n"
    "  --prompt       answer this one message and exit; without it, chat interactively\n"
    "  --max-tokens   at most N tokens per reply (1..65536; a reply also ends where the context is full)\n"
    "  sampling       the model file's general.sampling.* values where it has them, else temperature 0.8,\n"
    "                 top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1 over the last 64 tokens\n"
    "  --temperature  0 is greedy; > 0 (up to 100) samples with --top-k / --top-p / --min-p / --seed\n"
    "  --top-k        0 (off) up to the vocabulary size; --top-p in (0, 1] (1: off); --min-p in [0, 1]\n"
    "  --repeat-penalty  1 (off) or a factor in (0, 10] on recently seen tokens; --repeat-last-n 0..65536\n"
    "  --greedy       always the most likely token, no penalties\n"
    "  --threads      1 up to four per hardware thread (default: one per hardware thread)\n"
    "  --context      tokens the conversation may hold, 2 up to the model's context length (default 2048)\n"
    "  --raw          complete the prompt as plain text instead of a chat turn\n";

/// A setter of an optional option: the value parsed and bounded by make(value)'s setter, then stored.
template <class T, class Make>
OptionSetter optional_setter(std::optional<T>& out, Make make) {
  return [&out, make](std::string const& option, std::string const& value) {
    T v{};
    make(v)(option, value);
    out = v;
  };
}

/// Parses `args` (argv without the program name). Throws InvalidArgument (unknown option, missing value,
/// malformed number) or OutOfRange (a number past its bounds), naming the option and the value; `out` of a
/// failed parse is never returned, so nothing half-parsed is used.
inline ChatOptions parse_chat_args(std::span<char const* const> args) {
  ChatOptions o;
  std::map<std::string, OptionSetter> const setters = {
      {"--model", text(o.model)},
      {"--prompt", [&](std::string const&, std::string const& v) { o.prompt = v; }},
      {"-p", [&](std::string const&, std::string const& v) { o.prompt = v; }},
      {"--system", [&](std::string const&, std::string const& v) { o.system = v; }},
      {"--max-tokens", integer(o.max_tokens, 1, max_generation)},
      {"-n", integer(o.max_tokens, 1, max_generation)},
      {"--temperature", optional_setter(o.temperature, [](float& v) { return real(v, 0.0, 100.0); })},
      {"--top-k", optional_setter(o.top_k, [](std::uint32_t& v) { return integer(v, 0, std::numeric_limits<std::uint32_t>::max()); })},
      {"--top-p", optional_setter(o.top_p, [](float& v) { return real(v, 0.0, 1.0, Lower::open); })},
      {"--min-p", optional_setter(o.min_p, [](float& v) { return real(v, 0.0, 1.0); })},
      {"--repeat-penalty", optional_setter(o.repeat_penalty, [](float& v) { return real(v, 0.0, 10.0, Lower::open); })},
      {"--repeat-last-n", optional_setter(o.repeat_last_n, [](std::uint32_t& v) { return integer(v, 0, 65536); })},
      {"--seed", integer(o.seed, 0, std::numeric_limits<std::uint64_t>::max())},
      {"--threads", integer(o.threads, 1, max_threads())},
      {"-t", integer(o.threads, 1, max_threads())},
      {"--context", integer(o.context, min_context, max_context)},
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string const a = args[i];
    if (a == "--raw") {
      o.raw = true;
    } else if (a == "--greedy") {
      o.greedy = true;
    } else if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (auto const s = setters.find(a); s != setters.end()) {
      if (i + 1 >= args.size()) piecrust::detail::fail<InvalidArgument>(a, " needs a value");
      s->second(a, args[++i]);
    } else {
      piecrust::detail::fail<InvalidArgument>("unknown option ", a);
    }
  }
  return o;
}

/// The bounds that depend on the model: --context at most its context length, --top-k at most its
/// vocabulary. Throws OutOfRange naming the option, the value and the model's limit.
inline void check_against_model(ChatOptions const& o, std::size_t model_context, std::size_t vocab) {
  if (model_context > 0 && o.context > model_context) {
    piecrust::detail::fail<OutOfRange>("--context = ", o.context, " is more than the model's context length ", model_context);
  }
  if (o.top_k && *o.top_k > vocab) {
    piecrust::detail::fail<OutOfRange>("--top-k = ", *o.top_k, " is more than the vocabulary size ", vocab);
  }
}

/// The chat's sampling, every field resolved.
struct ChatSampling {
  float temperature = 0.8f;
  std::uint32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.1f;
  std::uint32_t repeat_last_n = 64;
  bool greedy = false;
  bool from_model = false;  // some value came from the model file's general.sampling.* keys
};

/// The defaults without a recommendation in the file: llama.cpp's CLI sampling (common/common.h: temperature
/// 0.8, top-k 40, top-p 0.95, min-p 0.05, penalties over the last 64 tokens) with its older repeat penalty of
/// 1.1 (llama.cpp now defaults to 1.0, off; SmolLM2-135M repeats itself within a reply without it).
inline constexpr ChatSampling default_chat_sampling{};

/// The model's recommended sampling where its GGUF file gives it (llama.cpp's general.sampling.* keys:
/// temp, top_k, top_p, min_p, penalty_repeat, penalty_last_n), over `base` for the keys it lacks. FormatError
/// for a key of the wrong type; OutOfRange for a value the chat would refuse on its command line.
template <class File>
[[nodiscard]] ChatSampling recommended_sampling(File const& file, ChatSampling base = default_chat_sampling) {
  auto read = [&](char const* key, auto& field, double lo, double hi) {
    auto const* v = file.find(key);
    if (v == nullptr) return;
    using T = std::decay_t<decltype(field)>;
    T const x = v->template as<T>(key);
    if (!(static_cast<double>(x) >= lo && static_cast<double>(x) <= hi)) {
      piecrust::detail::fail<OutOfRange>("model file: ", key, " = ", x, " is out of range [", lo, ", ", hi, "]");
    }
    field = x;
    base.from_model = true;
  };
  read("general.sampling.temp", base.temperature, 0.0, 100.0);
  read("general.sampling.top_k", base.top_k, 0.0, 4294967295.0);
  read("general.sampling.top_p", base.top_p, 1e-9, 1.0);
  read("general.sampling.min_p", base.min_p, 0.0, 1.0);
  read("general.sampling.penalty_repeat", base.repeat_penalty, 1e-9, 10.0);
  read("general.sampling.penalty_last_n", base.repeat_last_n, 0.0, 65536.0);
  return base;
}

/// The command line's overrides over `recommended`.
[[nodiscard]] inline ChatSampling chat_sampling(ChatOptions const& o, ChatSampling s) {
  if (o.temperature) s.temperature = *o.temperature;
  if (o.top_k) s.top_k = *o.top_k;
  if (o.top_p) s.top_p = *o.top_p;
  if (o.min_p) s.min_p = *o.min_p;
  if (o.repeat_penalty) s.repeat_penalty = *o.repeat_penalty;
  if (o.repeat_last_n) s.repeat_last_n = *o.repeat_last_n;
  s.greedy = o.greedy || s.temperature == 0.0f;
  return s;
}

/// The runtime sampler of `s`: greedy, or top-k / top-p / min-p at the temperature (a filter at its "off" value
/// is left out), with the repeat penalty over the context's last repeat_last_n tokens.
[[nodiscard]] inline SamplerSpec make_sampler(ChatSampling const& s) {
  if (s.greedy) return samplers::greedy();
  Temperature const t{s.temperature};
  std::uint32_t const k = s.top_k == 0 ? std::numeric_limits<std::uint32_t>::max() : s.top_k;  // 0: off
  SamplerSpec spec = samplers::top_k_top_p(TopK{k}, TopP{s.top_p}, MinP{s.min_p}, t);
  if (s.top_k == 0 && s.top_p >= 1.0f) spec = s.min_p > 0.0f ? samplers::min_p(MinP{s.min_p}, t) : samplers::temperature(t);
  return spec.with_penalties(Penalties{s.repeat_penalty, 0.0f, 0.0f, s.repeat_last_n});
}

/// What a turn does once its message is in the context.
struct TurnPlan {
  enum class Kind {
    generate,  // reply with at most `budget` tokens
    restart,   // start a new conversation with this message (the old one leaves too little room)
    too_long,  // the message does not fit even a new conversation: the chat ends
  };
  Kind kind;
  std::size_t budget = 0;
};

/// `used`: tokens the conversation holds with the new message (and, for a new conversation, the system
/// prompt); `fresh`: whether it is a new conversation. A conversation that cannot fit the whole reply starts
/// over once; a new one replies with what room is left (at least one token) or, with none, ends the chat.
inline TurnPlan plan_turn(std::size_t used, bool fresh, std::size_t context, std::size_t max_tokens) {
  bool const room_for_one = used < context;
  if (!fresh && (!room_for_one || max_tokens > context - used)) return {TurnPlan::Kind::restart, 0};
  if (!room_for_one) return {TurnPlan::Kind::too_long, 0};
  return {TurnPlan::Kind::generate, std::min(max_tokens, context - used)};
}

}  // namespace piecrust::examples::chat
