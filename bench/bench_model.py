#!/usr/bin/env python3
"""SmolLM2-135M-Instruct (Q4_1) throughput: piecrust beside llama.cpp in one run.

Measures prefill of 512 tokens and decode at batch 1 and batch 8 (8 sequences, one token each per step),
tokens/s, best of --repeats, with the same model file and thread count for both engines:
  * piecrust: the bench_model program (bench/bench_model.cpp);
  * llama.cpp: llama-cpp-python's low-level API (llama_decode on llama_batch; f16 KV, no flash attention).
Prints a Markdown table with the ratios (piecrust / llama.cpp).

usage: bench_model.py --bench build/bench/bench_model [--model FILE] [--threads 2] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import time

import llama_cpp as lc


def llama_cpp_bench(model_path, threads, repeats):
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(model_path.encode(), mp)
    cp = lc.llama_context_default_params()
    cp.n_ctx = 2048
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_seq_max = 8
    cp.kv_unified = True
    cp.n_threads = threads
    cp.n_threads_batch = threads
    cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = lc.llama_init_from_model(model, cp)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    batch = lc.llama_batch_init(512, 0, 8)
    mem = lc.llama_get_memory(ctx)

    def decode(items):  # items: (token, seq, pos, want_logits)
        batch.n_tokens = len(items)
        for i, (t, s, p, l) in enumerate(items):
            batch.token[i] = t
            batch.pos[i] = p
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = s
            batch.logits[i] = 1 if l else 0
        rc = lc.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def argmax(i):
        ptr = lc.llama_get_logits_ith(ctx, i)
        best, bi = -1e30, 0
        # a Python loop over 49152 logits would dominate the decode time: use numpy when present
        try:
            import numpy as np
            a = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
            return int(a.argmax())
        except ImportError:
            for k in range(n_vocab):
                if ptr[k] > best:
                    best, bi = ptr[k], k
            return bi

    prompt = [100 + (i * 37) % 30000 for i in range(512)]
    prefill = 0.0
    for _ in range(repeats):
        lc.llama_memory_clear(mem, True)
        t0 = time.perf_counter()
        decode([(t, 0, p, p == 511) for p, t in enumerate(prompt)])
        prefill = max(prefill, 512 / (time.perf_counter() - t0))

    def decode_rate(nseq, steps):
        best = 0.0
        for _ in range(repeats):
            lc.llama_memory_clear(mem, True)
            nxt = []
            for s in range(nseq):
                toks = prompt[s * 8: s * 8 + 64]
                decode([(t, s, p, p == 63) for p, t in enumerate(toks)])
                nxt.append(argmax(-1))
            t0 = time.perf_counter()
            for step in range(steps):
                decode([(nxt[s], s, 64 + step, True) for s in range(nseq)])
                nxt = [argmax(s) for s in range(nseq)]
            best = max(best, nseq * steps / (time.perf_counter() - t0))
        return best

    out = {"engine": "llama.cpp", "threads": threads, "prefill_512_tok_s": prefill,
           "decode_b1_tok_s": decode_rate(1, 64), "decode_b8_tok_s": decode_rate(8, 32)}
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_model program")
    default_model = os.environ.get("PIECRUST_MODEL") or os.path.join(
        os.environ.get("PIECRUST_CACHE_DIR", os.path.expanduser("~/.cache/piecrust")), "models",
        "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--model", default=default_model)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ref = llama_cpp_bench(args.model, args.threads, args.repeats)
    run = subprocess.run([args.bench, "--model", args.model, "--threads", str(args.threads), "--repeats",
                          str(args.repeats)], check=True, capture_output=True, text=True)
    ours = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(ref))
    print(json.dumps(ours))
    print()
    print(f"| SmolLM2-135M Q4_1, {args.threads} threads | piecrust tok/s | llama.cpp tok/s | ratio |")
    print("|---|---|---|---|")
    for key, name in [("prefill_512_tok_s", "prefill 512 tokens"), ("decode_b1_tok_s", "decode, batch 1"),
                      ("decode_b8_tok_s", "decode, batch 8")]:
        print(f"| {name} | {ours[key]:.1f} | {ref[key]:.1f} | {ours[key] / ref[key]:.2f}x |")


if __name__ == "__main__":
    main()
