// Compiles the shared dialect and every kernel of the CUDA backend with hipcc (gemm as the BLAS-free direct
// kernel: no hipBLAS in Debian's HIP 5.2), paged attention, sampling, and the one LlamaModel on the HIP space.
// The functions below instantiate them; they are never run.
#include <piecrust/backends/hip.hpp>
#include <piecrust/model/llama_model.hpp>

template class piecrust::LlamaModel<piecrust::Cuda, piecrust::BFloat16>;
template class piecrust::LlamaModel<piecrust::Cuda, float>;

static_assert(piecrust::gpu::warp_size == 64, "CDNA wavefronts are 64 lanes wide");

void piecrust_hip_compile_check_kernels(piecrust::Cuda const& space, float* x, std::uint32_t* ids,
                                        std::span<std::uint32_t const> host_ids,
                                        std::span<piecrust::SamplingParams const> params,
                                        std::span<piecrust::LogitMask const> masks,
                                        std::span<piecrust::SampleKey const> keys, piecrust::WeightMatrix const& w,
                                        piecrust::PagedKv<piecrust::BFloat16> kv_bf16,
                                        piecrust::PagedKv<float> kv_f32) {
  using namespace piecrust;
  ShapedView<float, 2> const m(x, 4, 64);
  ShapedView<float const, 1> const weight(x, 64);
  rms_norm(space, m, weight, m);
  fused_add_rms_norm(space, m, m, weight);
  swiglu(space, m, m, m);
  rope(space, ShapedView<float, 3>(x, 4, 1, 64), host_ids);
  append_kv(space, kv_bf16, ShapedView<float const, 3>(x, 4, 1, 64), ShapedView<float const, 3>(x, 4, 1, 64), host_ids);
  append_kv(space, kv_f32, ShapedView<float const, 3>(x, 4, 1, 64), ShapedView<float const, 3>(x, 4, 1, 64), host_ids);
  embedding(space, w, host_ids, m);
  dequantize(space, w, m);
  gpu::dequantize_to_bf16(space, w, reinterpret_cast<BFloat16*>(x));
  sample(space, m, params, masks, keys, std::span<std::uint32_t>(ids, 4));
  probe_distribution(space, m, 0, 1.0f, masks, ShapedView<std::uint32_t, 2>(ids, 4, 64), m);
  probe_logprobs(space, m, ShapedView<std::uint32_t const, 2>(ids, 4, 64), 1.0f, masks, m);
  probe_entropy(space, m, 1.0f, masks, std::span<float>(x, 4));
  paged_attention(space, ShapedView<float const, 3>(x, 4, 2, 64), kv_bf16, PagedBatch{host_ids, host_ids, host_ids, host_ids},
                  ShapedView<float, 3>(x, 4, 2, 64), ShapedView<float, 2>(x, 4, 2));
  gemm(space, ShapedView<float const, 2>(x, 4, 64), w, m);
}
