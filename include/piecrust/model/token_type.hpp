#pragma once
// TokenType: the per-token attribute stored in GGUF's tokenizer.ggml.token_type
// (llama.cpp include/llama.h `enum llama_token_type`).

#include <cstdint>

namespace piecrust {

enum class TokenType : std::int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

using TokenId = std::int32_t;

}  // namespace piecrust
