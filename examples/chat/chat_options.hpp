#pragma once
// piecrust-chat's command line and its context budget, apart from main() so that tests can drive them.
//
// Every number is parsed strictly (common/cli.hpp) and bounded; the bounds that depend on the model
// (--context against its context length, --top-k against its vocabulary) are checked by check_against_model
// before any KV memory is reserved. plan_turn decides what a turn does when the context runs out, so that a
// conversation that cannot fit ends instead of starting over for ever.

#include "common/cli.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>

namespace piecrust::examples::chat {

struct ChatOptions {
  std::string model = default_model_path();
  std::optional<std::string> prompt;
  std::optional<std::string> system;
  std::size_t max_tokens = 256;  // 1..max_generation; a turn also stops where the context is full
  float temperature = 0.0f;      // 0 = greedy; [0, 100]
  std::uint32_t top_k = 0;       // 0 = off; at most the vocabulary
  float top_p = 1.0f;            // 1 = off; (0, 1]
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
    "                     [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
    "                     [--context N] [--raw]\n"
    "  --model        GGUF file (default: $PIECRUST_MODEL or the cache of scripts/fetch-model.sh)\n"
    "  --prompt       answer this one message and exit; without it, chat interactively\n"
    "  --max-tokens   at most N tokens per reply (1..65536; a reply also ends where the context is full)\n"
    "  --temperature  0 (default) is greedy; > 0 (up to 100) samples with --top-k / --top-p / --seed\n"
    "  --top-k        0 (off) up to the vocabulary size; --top-p in (0, 1]\n"
    "  --threads      1 up to four per hardware thread (default: one per hardware thread)\n"
    "  --context      tokens the conversation may hold, 2 up to the model's context length (default 2048)\n"
    "  --raw          complete the prompt as plain text instead of a chat turn\n";

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
      {"--temperature", real(o.temperature, 0.0, 100.0)},
      {"--top-k", integer(o.top_k, 0, std::numeric_limits<std::uint32_t>::max())},
      {"--top-p", real(o.top_p, 0.0, 1.0, Lower::open)},
      {"--seed", integer(o.seed, 0, std::numeric_limits<std::uint64_t>::max())},
      {"--threads", integer(o.threads, 1, max_threads())},
      {"-t", integer(o.threads, 1, max_threads())},
      {"--context", integer(o.context, min_context, max_context)},
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string const a = args[i];
    if (a == "--raw") {
      o.raw = true;
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
  if (o.top_k > vocab) piecrust::detail::fail<OutOfRange>("--top-k = ", o.top_k, " is more than the vocabulary size ", vocab);
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
