#!/usr/bin/env python3
"""Model throughput (SmolLM2-135M-Instruct Q4_1 by default, any --model): piecrust beside llama.cpp in one run.

Measures prefill of 512 tokens and decode at batch 1 and batch 8 (8 sequences, one token each per step),
tokens/s, best of --repeats, with the same model file and thread count for both engines:
  * piecrust: the bench_model program (bench/bench_model.cpp);
  * llama.cpp: llama-cpp-python's low-level API (llama_decode on llama_batch; f16 KV, no flash attention).
Prints a Markdown table with the ratios (piecrust / llama.cpp), then the batch-1 decode weight-read floor:
the bytes of every weight matrix a decode step reads once (from the file's tensor table; the embedding row
lookup excluded, a tied embedding counted once as the LM head) over the STREAM-like read bandwidth measured
in the same run (bench_quant's BM_StreamRead, same thread count, best of a run before and after piecrust's),
and each engine's decode rate as a fraction of that floor.

With --context N: decode at batch 1 and 8 after N cached positions (8 copies of one prefilled sequence), and
after 64, both engines, with the share of a step the cache's length costs.

usage: bench_model.py --bench build/bench/bench_model [--stream build/bench/bench_quant] [--model FILE]
                      [--threads 2] [--repeats 3] [--context N [--kv bf16|f32]]
"""
import argparse
import json
import os
import struct
import subprocess
import time

import llama_cpp as lc


class LlamaCpp:
    """One llama.cpp context on a model file: f16 KV (its default), no flash attention, unified KV cache
    for up to 9 sequences (so a sequence copy shares cells, as piecrust's forks share pages)."""

    def __init__(self, model_path, threads, n_ctx):
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(model_path.encode(), lc.llama_model_default_params())
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = 512
        cp.n_ubatch = 512
        cp.n_seq_max = 9
        cp.kv_unified = True
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = lc.llama_init_from_model(self.model, cp)
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.batch = lc.llama_batch_init(512, 0, 9)
        self.mem = lc.llama_get_memory(self.ctx)

    def decode(self, items):  # items: (token, seq, pos, want_logits), at most 512
        b = self.batch
        b.n_tokens = len(items)
        for i, (t, s, p, l) in enumerate(items):
            b.token[i] = t
            b.pos[i] = p
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = s
            b.logits[i] = 1 if l else 0
        rc = lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def argmax(self, i):
        ptr = lc.llama_get_logits_ith(self.ctx, i)
        # a Python loop over the vocabulary would dominate the decode time: use numpy when present
        try:
            import numpy as np
            return int(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).argmax())
        except ImportError:
            return max(range(self.n_vocab), key=lambda k: ptr[k])

    def clear(self):
        lc.llama_memory_clear(self.mem, True)

    def copy_sequence(self, src, dst):
        lc.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def remove_sequence(self, seq):
        lc.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def decode_rate(self, seqs, start, firsts, steps):
        """Greedy decode of `steps` tokens on every sequence of `seqs` at once from position `start`, sequence
        seqs[i] starting from token firsts[i]: tokens/s."""
        nxt = list(firsts)
        t0 = time.perf_counter()
        for step in range(steps):
            self.decode([(nxt[i], s, start + step, True) for i, s in enumerate(seqs)])
            nxt = [self.argmax(i) for i in range(len(seqs))]
        return len(seqs) * steps / (time.perf_counter() - t0)

    def close(self):
        lc.llama_batch_free(self.batch)
        lc.llama_free(self.ctx)
        lc.llama_model_free(self.model)


def llama_cpp_bench(model_path, threads, repeats):
    llm = LlamaCpp(model_path, threads, 2048)
    prompt = [100 + (i * 37) % 30000 for i in range(512)]
    prefill = 0.0
    for _ in range(repeats):
        llm.clear()
        t0 = time.perf_counter()
        llm.decode([(t, 0, p, p == 511) for p, t in enumerate(prompt)])
        prefill = max(prefill, 512 / (time.perf_counter() - t0))

    def decode_rate(nseq, steps):
        best = 0.0
        for _ in range(repeats):
            llm.clear()
            firsts = []
            for s in range(nseq):
                toks = prompt[s * 8: s * 8 + 64]
                llm.decode([(t, s, p, p == 63) for p, t in enumerate(toks)])
                firsts.append(llm.argmax(-1))
            best = max(best, llm.decode_rate(list(range(nseq)), 64, firsts, steps))
        return best

    out = {"engine": "llama.cpp", "threads": threads, "prefill_512_tok_s": prefill,
           "decode_b1_tok_s": decode_rate(1, 64), "decode_b8_tok_s": decode_rate(8, 32)}
    llm.close()
    return out


def llama_cpp_context_bench(model_path, threads, context):
    """bench_model --context's measurement on llama.cpp: decode at batch 1 and 8 after `context` and after 64
    cached positions; the 8 sequences are copies of one prefilled sequence."""
    steps = 32
    llm = LlamaCpp(model_path, threads, context + 9 * steps + 64)
    out = {"engine": "llama.cpp", "threads": threads, "context": context}
    for n, at in [(context, ""), (64, "_at_64")]:
        llm.clear()
        for start in range(0, n, 512):
            toks = [100 + (i * 37) % 30000 for i in range(start, min(n, start + 512))]
            llm.decode([(t, 0, start + j, start + j == n - 1) for j, t in enumerate(toks)])
        first = llm.argmax(-1)
        llm.copy_sequence(0, 1)
        out["decode_b1_tok_s" + at] = llm.decode_rate([1], n, [first], steps)
        llm.remove_sequence(1)
        for s in range(1, 9):
            llm.copy_sequence(0, s)
        out["decode_b8_tok_s" + at] = llm.decode_rate(list(range(1, 9)), n, [first] * 8, steps)
    llm.close()
    return out


# ggml type id -> (weights per block, bytes per block), for the types piecrust loads.
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
               8: (32, 34), 20: (32, 18), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
               14: (256, 210), 23: (256, 136)}


def gguf_tensors(path):
    """[(name, dims, ggml type id)] from a GGUF file's header (the metadata values are skipped)."""
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def string():
            return f.read(read("Q")).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def skip(vtype):
            if vtype == 8:
                string()
            elif vtype == 9:
                item, n = read("I"), read("Q")
                for _ in range(n):
                    skip(item)
            else:
                f.seek(struct.calcsize("<" + scalar[vtype]), 1)

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")  # version
        n_tensors, n_kv = read("Q"), read("Q")
        for _ in range(n_kv):
            string()
            skip(read("I"))
        out = []
        for _ in range(n_tensors):
            name = string()
            dims = [read("Q") for _ in range(read("I"))]
            out.append((name, dims, read("I")))
            read("Q")  # offset
        return out


def decode_weight_bytes(path):
    """Bytes of the weight matrices one decode step reads once: every 2-D tensor, except the token
    embedding when a separate output matrix exists (then a step reads one embedding row)."""
    tensors = gguf_tensors(path)
    tied = not any(name == "output.weight" for name, _, _ in tensors)
    total = 0
    for name, dims, t in tensors:
        if len(dims) != 2 or (name == "token_embd.weight" and not tied):
            continue
        per_block, block_bytes = GGML_BLOCKS[t]
        total += dims[0] * dims[1] // per_block * block_bytes
    return total


def stream_read_bps(stream_bench, threads):
    """The STREAM-like read bandwidth (bytes/s) of bench_quant's BM_StreamRead on `threads` threads."""
    env = dict(os.environ, PIECRUST_BENCH_THREADS=str(threads))
    run = subprocess.run([stream_bench, "--benchmark_filter=^BM_StreamRead", "--benchmark_format=json",
                          "--benchmark_min_time=0.5"], check=True, capture_output=True, text=True, env=env)
    return json.loads(run.stdout)["benchmarks"][0]["bytes_per_second"]


def context_main(args):
    """--context N: decode after N cached positions (and after 64), batch 1 and 8, both engines; the share of
    a step that the cache's length costs, (step time at N - step time at 64) / step time at N, which is
    attention's share plus the cost of reading a longer cache."""
    ref = llama_cpp_context_bench(args.model, args.threads, args.context)
    run = subprocess.run([args.bench, "--model", args.model, "--threads", str(args.threads), "--context",
                          str(args.context), "--kv", args.kv], check=True, capture_output=True, text=True)
    ours = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(ref))
    print(json.dumps(ours))
    print()
    print(f"| {os.path.basename(args.model)}, {args.context} positions, {args.threads} threads | piecrust tok/s "
          f"({args.kv} KV) | llama.cpp tok/s (f16 KV) | ratio | context's share of a step: piecrust, llama.cpp |")
    print("|---|---|---|---|---|")
    for key, name in [("decode_b1_tok_s", "decode, batch 1"), ("decode_b8_tok_s", "decode, batch 8")]:
        share = [1 - e[key] / e[key + "_at_64"] for e in (ours, ref)]
        print(f"| {name} | {ours[key]:.1f} | {ref[key]:.1f} | {ours[key] / ref[key]:.2f}x | "
              f"{share[0]:.0%}, {share[1]:.0%} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_model program")
    default_model = os.environ.get("PIECRUST_MODEL") or os.path.join(
        os.environ.get("PIECRUST_CACHE_DIR", os.path.expanduser("~/.cache/piecrust")), "models",
        "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--stream", help="path of the bench_quant program (default: beside --bench)")
    ap.add_argument("--model", default=default_model)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--context", type=int, default=0,
                    help="decode at batch 1 and 8 after this many cached positions instead (see context_main)")
    ap.add_argument("--kv", choices=["f32", "bf16"], default="bf16", help="piecrust's KV cache type for --context")
    args = ap.parse_args()
    if args.context > 0:
        context_main(args)
        return

    stream_bench = args.stream or os.path.join(os.path.dirname(os.path.abspath(args.bench)), "bench_quant")
    if not os.path.exists(stream_bench):
        ap.error(f"{stream_bench} is missing: build the bench_quant target beside bench_model or pass --stream")

    ref = llama_cpp_bench(args.model, args.threads, args.repeats)
    stream = [stream_read_bps(stream_bench, args.threads)]
    run = subprocess.run([args.bench, "--model", args.model, "--threads", str(args.threads), "--repeats",
                          str(args.repeats)], check=True, capture_output=True, text=True)
    ours = json.loads(run.stdout.strip().splitlines()[-1])
    stream.append(stream_read_bps(stream_bench, args.threads))
    print(json.dumps(ref))
    print(json.dumps(ours))
    print()
    print(f"| {os.path.basename(args.model)}, {args.threads} threads | piecrust tok/s | llama.cpp tok/s | ratio |")
    print("|---|---|---|---|")
    for key, name in [("prefill_512_tok_s", "prefill 512 tokens"), ("decode_b1_tok_s", "decode, batch 1"),
                      ("decode_b8_tok_s", "decode, batch 8")]:
        print(f"| {name} | {ours[key]:.1f} | {ref[key]:.1f} | {ours[key] / ref[key]:.2f}x |")

    # Batch-1 decode against the weight-read floor (the higher STREAM reading: the stricter floor).
    per_token = decode_weight_bytes(args.model)
    bandwidth = max(stream)
    floor = bandwidth / per_token
    print()
    print(json.dumps({"weight_bytes_per_token": per_token, "stream_read_GBps": [b * 1e-9 for b in stream],
                      "floor_tok_s": floor}))
    print(f"weight-read floor, decode batch 1: {per_token / 1e6:.1f} MB per token / STREAM read "
          f"{bandwidth * 1e-9:.1f} GB/s ({args.threads} threads; {stream[0] * 1e-9:.1f} before, "
          f"{stream[1] * 1e-9:.1f} after piecrust) = {floor:.1f} tok/s; piecrust "
          f"{ours['decode_b1_tok_s'] / floor:.0%} of it, llama.cpp {ref['decode_b1_tok_s'] / floor:.0%}")


if __name__ == "__main__":
    main()
