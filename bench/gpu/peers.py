#!/usr/bin/env python3
"""Peers of piecrust's GPU attention and sampling benchmark, timed in the same run, and the joined table.

Usage: peers.py --piecrust piecrust.tsv [--quick] [--markdown out.md]

Reads the BENCH / INFO lines bench_gpu_attention printed, times every peer on the same shapes (case names
must match bench_attention.cu), and prints one table: piecrust's time, its % of the read bandwidth measured
in the same run (decode) or TFLOP/s (prefill), and each peer's time with the ratio peer / piecrust
(> 1: piecrust is faster). A peer that cannot be imported is reported as "not installed"; one that fails
is reported with its error. Nothing is skipped silently.

Peers: FlashInfer (BatchDecodeWithPagedKVCacheWrapper, BatchPrefillWithPagedKVCacheWrapper causal and with a
custom mask, top_k_top_p_sampling_from_logits), PyTorch SDPA with the FLASH_ATTENTION (FlashAttention-2) and
CUDNN_ATTENTION backends, and FlexAttention with a block mask (torch.compile'd).
"""

import argparse
import math
import statistics
import sys
import traceback

PAGE = 16
ITERS, WARMUP = 50, 10


def median_us(torch, fn):
    """Median of ITERS calls timed with CUDA events, after WARMUP calls (no sync between calls)."""
    for _ in range(WARMUP):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(ITERS)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(ITERS)]
    for i in range(ITERS):
        starts[i].record()
        fn()
        stops[i].record()
    torch.cuda.synchronize()
    return statistics.median(1000.0 * s.elapsed_time(e) for s, e in zip(starts, stops))


# ---- case descriptions (the same as bench_attention.cu) ----------------------------------------------

DECODE = {
    "decode_h32_8_d128_b64_l4096": (64, 4096, 32, 8, 128),
    "decode_h32_8_d128_b128_l8192": (128, 8192, 32, 8, 128),
    "decode_h9_3_d64_b64_l4096": (64, 4096, 9, 3, 64),
    "decode_h9_3_d64_b128_l8192": (128, 8192, 9, 3, 64),
}
PREFILL = {
    "prefill_causal_h32_8_d128_s8192": (8192, 32, 8, 128),
    "prefill_causal_h32_8_d64_s8192": (8192, 32, 8, 64),
}
SINK, WINDOW = 4, 1024
SINKWIN = ("masked_sinkwin_h32_8_d128_s8192", 8192, 32, 8, 128)
TREE = ("masked_tree_h32_8_d128_b16_p4096_t64", 16, 4096, 64, 32, 8, 128)
SAMPLE = {f"sample_topk_topp_v128k_b{b}": b for b in (1, 64, 128)}
VOCAB, TOP_K, TOP_P = 128256, 50, 0.9


def paged_layout(torch, batch, kv_len, dev):
    """Pages in order, FlashInfer's CSR page table (int32)."""
    pages = (kv_len + PAGE - 1) // PAGE
    indptr = torch.arange(0, batch + 1, dtype=torch.int32, device=dev) * pages
    indices = torch.arange(0, batch * pages, dtype=torch.int32, device=dev)
    last = torch.full((batch,), kv_len - (pages - 1) * PAGE, dtype=torch.int32, device=dev)
    return batch * pages, indptr, indices, last


def tree_allowed(torch, t, dev):
    """[t][t] bool: new token i sees token j iff j is i or an ancestor of i (heap parent (i - 1) // 2)."""
    allowed = torch.zeros((t, t), dtype=torch.bool)
    for i in range(t):
        a = i
        while True:
            allowed[i, a] = True
            if a == 0:
                break
            a = (a - 1) // 2
    return allowed.to(dev)


# ---- peers -------------------------------------------------------------------------------------------


class Peers:
    def __init__(self, torch, results, errors):
        self.torch = torch
        self.results = results
        self.errors = errors
        self.dev = "cuda"
        try:
            import flashinfer  # noqa: F401

            self.flashinfer = flashinfer
        except Exception as e:  # ImportError or a broken install
            self.flashinfer = None
            self.flashinfer_error = f"not installed ({type(e).__name__})"
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            self.create_block_mask = create_block_mask
            self.flex = torch.compile(flex_attention, dynamic=False)
        except Exception as e:
            self.flex = None
            self.flex_error = f"not installed ({type(e).__name__})"
        self.workspace = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=self.dev)

    def record(self, case, impl, fn):
        try:
            self.results[(case, impl)] = fn()
        except Exception as e:  # report, never hide
            self.errors[(case, impl)] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
            traceback.print_exc(file=sys.stderr)
        finally:
            self.torch.cuda.empty_cache()

    def need(self, case, impl, module_attr):
        if getattr(self, module_attr) is None:
            self.errors[(case, impl)] = getattr(self, module_attr + "_error")
            return False
        return True

    # -- decode
    def decode(self, case, batch, kv_len, hq, hkv, d):
        torch = self.torch
        for impl, tensor_cores in (("flashinfer", False), ("flashinfer_tc", True)):
            if not self.need(case, impl, "flashinfer"):
                continue

            def run(tensor_cores=tensor_cores):
                fi = self.flashinfer
                pages, indptr, indices, last = paged_layout(torch, batch, kv_len, self.dev)
                kv = torch.rand((pages, 2, PAGE, hkv, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
                q = torch.rand((batch, hq, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
                w = fi.BatchDecodeWithPagedKVCacheWrapper(self.workspace, "NHD", use_tensor_cores=tensor_cores)
                try:
                    w.plan(indptr, indices, last, hq, hkv, d, PAGE, pos_encoding_mode="NONE",
                           q_data_type=torch.bfloat16, kv_data_type=torch.bfloat16)
                except TypeError:  # older FlashInfer: one data_type
                    w.plan(indptr, indices, last, hq, hkv, d, PAGE, pos_encoding_mode="NONE", data_type=torch.bfloat16)
                return median_us(torch, lambda: w.run(q, kv))

            self.record(case, impl, run)

    # -- prefill / masked prefill through FlashInfer's paged prefill wrapper
    def flashinfer_prefill(self, case, impl, batch, qo_len, kv_len, hq, hkv, d, causal, custom_mask=None):
        if not self.need(case, impl, "flashinfer"):
            return
        torch = self.torch

        def run():
            fi = self.flashinfer
            pages, indptr, indices, last = paged_layout(torch, batch, kv_len, self.dev)
            kv = torch.rand((pages, 2, PAGE, hkv, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
            q = torch.rand((batch * qo_len, hq, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
            qo_indptr = torch.arange(0, batch + 1, dtype=torch.int32, device=self.dev) * qo_len
            w = fi.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD")
            kwargs = dict(q_data_type=torch.bfloat16, kv_data_type=torch.bfloat16)
            if custom_mask is not None:
                kwargs["custom_mask"] = custom_mask
            else:
                kwargs["causal"] = causal
            w.plan(qo_indptr, indptr, indices, last, hq, hkv, d, PAGE, **kwargs)
            return median_us(torch, lambda: w.run(q, kv))

        self.record(case, impl, run)

    # -- PyTorch SDPA (dense, GQA)
    def sdpa(self, case, s, hq, hkv, d):
        torch = self.torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        import torch.nn.functional as F

        for impl, backend in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):

            def run(backend=backend):
                q = torch.rand((1, hq, s, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
                k = torch.rand((1, hkv, s, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
                v = torch.rand((1, hkv, s, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
                with sdpa_kernel(backend):
                    try:
                        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                        return median_us(torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
                    except RuntimeError:
                        # The backend may not take GQA: expand K/V heads first (outside the timing).
                        ke = k.repeat_interleave(hq // hkv, dim=1)
                        ve = v.repeat_interleave(hq // hkv, dim=1)
                        return median_us(torch, lambda: F.scaled_dot_product_attention(q, ke, ve, is_causal=True))

            self.record(case, impl, run)

    # -- FlexAttention with a block mask (built once, outside the timing)
    def flex_run(self, case, batch, qo_len, kv_len, hq, hkv, d, mask_mod):
        if not self.need(case, "flex", "flex"):
            return
        torch = self.torch

        def run():
            q = torch.rand((batch, hq, qo_len, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
            k = torch.rand((batch, hkv, kv_len, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
            v = torch.rand((batch, hkv, kv_len, d), dtype=torch.bfloat16, device=self.dev) * 2 - 1
            bm = self.create_block_mask(mask_mod, batch, None, qo_len, kv_len, device=self.dev)
            return median_us(torch, lambda: self.flex(q, k, v, block_mask=bm, enable_gqa=True))

        self.record(case, "flex", run)

    def sample(self, case, rows):
        if not self.need(case, "flashinfer", "flashinfer"):
            return
        torch = self.torch

        def run():
            logits = (torch.rand((rows, VOCAB), dtype=torch.float32, device=self.dev) * 2 - 1) * 8
            fn = self.flashinfer.sampling.top_k_top_p_sampling_from_logits
            return median_us(torch, lambda: fn(logits, TOP_K, TOP_P))

        self.record(case, "flashinfer", run)


def run_peers(torch, results, errors):
    p = Peers(torch, results, errors)
    for case, (b, l, hq, hkv, d) in DECODE.items():
        p.decode(case, b, l, hq, hkv, d)
    for case, (s, hq, hkv, d) in PREFILL.items():
        p.flashinfer_prefill(case, "flashinfer", 1, s, s, hq, hkv, d, causal=True)
        p.sdpa(case, s, hq, hkv, d)
        p.flex_run(case, 1, s, s, hq, hkv, d, lambda b, h, qi, ki: qi >= ki)

    case, s, hq, hkv, d = SINKWIN

    def sinkwin(b, h, qi, ki):
        return (qi >= ki) & ((ki < SINK) | (qi - ki < WINDOW))

    p.flex_run(case, 1, s, s, hq, hkv, d, sinkwin)
    if p.flashinfer is not None:
        qi = torch.arange(s, device="cuda")[:, None]
        ki = torch.arange(s, device="cuda")[None, :]
        mask = ((qi >= ki) & ((ki < SINK) | (qi - ki < WINDOW))).flatten()
        p.flashinfer_prefill(case, "flashinfer_custom", 1, s, s, hq, hkv, d, causal=False, custom_mask=mask)
        del mask
    else:
        errors[(case, "flashinfer_custom")] = p.flashinfer_error

    case, b, prefix, t, hq, hkv, d = TREE
    allowed = tree_allowed(torch, t, "cuda")

    def tree(bb, h, qi, ki):
        return (ki < prefix) | allowed[qi, (ki - prefix).clamp(min=0)]

    p.flex_run(case, b, t, prefix + t, hq, hkv, d, tree)
    if p.flashinfer is not None:
        row = torch.cat([torch.ones((t, prefix), dtype=torch.bool, device="cuda"), allowed], dim=1)  # [t][prefix + t]
        mask = row.flatten().repeat(b)
        p.flashinfer_prefill(case, "flashinfer_custom", b, t, prefix + t, hq, hkv, d, causal=False, custom_mask=mask)
    else:
        errors[(case, "flashinfer_custom")] = p.flashinfer_error

    for case, rows in SAMPLE.items():
        p.sample(case, rows)


# ---- the joined table ----------------------------------------------------------------------------------

PEERS_OF_KIND = {
    "decode": ("flashinfer", "flashinfer_tc"),
    "prefill": ("flashinfer", "sdpa_flash", "sdpa_cudnn", "flex"),
    "masked": ("flex", "flashinfer_custom"),
    "sample": ("flashinfer",),
}
GOALS = {  # (peer, the ratio peer / piecrust the issue asks for)
    "decode": [("flashinfer", 1.0)],
    "prefill": [("sdpa_flash", 1.0)],
    "masked": [("flex", 1.0), ("flashinfer_custom", 3.0)],
    "sample": [("flashinfer", 1.0)],
}


def table(piecrust, info, results, errors):
    lines = []
    stream = piecrust.get("stream_read_4gib")
    bw = stream[1] / (stream[0] * 1e-6) if stream else None  # bytes / s
    if bw:
        lines.append(f"read bandwidth measured (4 GiB read kernel): {bw / 1e12:.3f} TB/s")
    dev = info.get(("device", "name"))
    if dev:
        lines.append(f"device: {dev}")
    lines.append("")
    lines.append("| case | piecrust us | measure | peer | peer us | peer / piecrust | goal |")
    lines.append("|---|---|---|---|---|---|---|")
    cases = [c for c in piecrust if c != "stream_read_4gib"]
    peers_of = {}
    for (case, impl) in list(results) + list(errors):
        peers_of.setdefault(case, [])
        if impl not in peers_of[case]:
            peers_of[case].append(impl)
    for case in list(DECODE) + list(PREFILL) + [SINKWIN[0], TREE[0]] + list(SAMPLE):
        if case not in cases and case not in peers_of:
            continue
        us, nbytes, flops = piecrust.get(case, (None, 0, 0))
        kind = case.split("_")[0]
        if us is None:
            measure = "piecrust: no result"
        elif kind == "decode" and bw:
            measure = f"{100 * nbytes / (us * 1e-6) / bw:.0f}% of read BW"
        elif flops:
            measure = f"{flops / (us * 1e-6) / 1e12:.0f} TFLOP/s"
        else:
            measure = f"{nbytes / (us * 1e-6) / 1e9:.0f} GB/s"
        plan = info.get((case, "host_plan_us"))
        if plan is not None:
            measure += f", host plan {float(plan):.0f} us"
        goals = dict(GOALS.get(kind, []))
        impls = peers_of.get(case, []) or ["(no peer)"]
        for i, impl in enumerate(impls):
            first = i == 0
            pu = results.get((case, impl))
            if pu is not None and us:
                ratio = f"{pu / us:.2f}x"
                peer_us = f"{pu:.1f}"
            else:
                ratio = ""
                peer_us = errors.get((case, impl), "")
            goal = ""
            if impl in goals:
                if pu is None or not us:
                    goal = f">= {goals[impl]:.1f}x: not measured"
                else:
                    goal = f">= {goals[impl]:.1f}x: {'met' if pu / us >= goals[impl] else 'NOT met'}"
            if kind == "decode" and first and bw and us:
                goal += (" | " if goal else "") + (">= 90% BW: " + ("met" if nbytes / (us * 1e-6) / bw >= 0.9 else "NOT met"))
            lines.append(
                f"| {case if first else ''} | {f'{us:.1f}' if (first and us) else ''} | {measure if first else ''} | "
                f"{impl} | {peer_us} | {ratio} | {goal} |"
            )
    return "\n".join(lines)


def main():
    global ITERS, WARMUP
    ap = argparse.ArgumentParser()
    ap.add_argument("--piecrust", required=True, help="output of bench_gpu_attention")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", help="also write the table here")
    args = ap.parse_args()
    if args.quick:
        ITERS, WARMUP = 5, 2

    piecrust, info = {}, {}
    with open(args.piecrust) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "BENCH" and len(parts) >= 6:
                piecrust[parts[1]] = (float(parts[3]), float(parts[4]), float(parts[5]))
            elif parts[0] == "INFO" and len(parts) >= 4:
                info[(parts[1], parts[2])] = parts[3]

    results, errors = {}, {}
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        print(f"torch {torch.__version__}", file=sys.stderr)
        run_peers(torch, results, errors)
    except Exception as e:
        why = f"not installed ({type(e).__name__}: {e})" if isinstance(e, ImportError) else f"error: {e}"
        for case in list(DECODE) + list(PREFILL) + [SINKWIN[0], TREE[0]] + list(SAMPLE):
            for impl in PEERS_OF_KIND[case.split("_")[0]]:
                errors.setdefault((case, impl), why)

    out = table(piecrust, info, results, errors)
    print(out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
