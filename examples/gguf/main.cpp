// piecrust-gguf: inspect a GGUF file as piecrust reads it.
//
//   piecrust-gguf info model.gguf                         header, metadata, tensor table, totals per type
//   piecrust-gguf dump model.gguf blk.0.attn_q.weight --rows 0:2    rows as f32 text
//   piecrust-gguf tokenize model.gguf "Hello world"       token ids, one per line
//
// The logic is gguf_tool.hpp (tests run it in-process); exit status 0, 1 (file error) or 2 (command line).

#include "gguf/gguf_tool.hpp"

#include <cstddef>
#include <iostream>
#include <span>

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);  // dump writes millions of values
  auto const args = std::span<char const* const>(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0));
  return piecrust::examples::gguf::run_gguf_tool(args, std::cout, std::cerr);
}
