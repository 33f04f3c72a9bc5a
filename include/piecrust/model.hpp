#pragma once
// The model layer: GGUF files, tokenizers, chat templates and the Llama-family forward pass.
// LlamaModel runs on an execution space; include a backend (piecrust/backends/host.hpp) to get one.

#include <piecrust/model/chat_template.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/ggml_type.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/gguf_tensor_info.hpp>
#include <piecrust/model/gguf_value.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/llama_gguf.hpp>
#include <piecrust/model/llama_model.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/model/model_concept.hpp>
#include <piecrust/model/model_identity.hpp>
#include <piecrust/model/model_paths.hpp>
#include <piecrust/model/quantize.hpp>
#include <piecrust/model/streaming_detokenizer.hpp>
#include <piecrust/model/tiny_llama.hpp>
#include <piecrust/model/token_type.hpp>
#include <piecrust/model/tokenizer.hpp>
