#!/usr/bin/env python3
"""Random maskinfo conformance cases from the real upstream module (ejkernel.types.mask).

Writes one JSON case a line to stdout, in the format of the maskinfo suite (see the conformance README):
a leading `meta` line, then module-function cases and `MaskInfo.chain` cases (a constructor plus random ops
with each op's return, the final state, or the raised exception class and the op that raised it).
Inputs are small (batch <= 3, lengths <= 8; <= 40 in `visualize` mode) and deliberately include padding,
negative and out-of-range ids, bad modes and bad indices, so upstream's error cases are recorded too.

    python generate_maskinfo_vectors.py SEED [COUNT] > cases.jsonl              # mixed random cases
    python generate_maskinfo_vectors.py --mode visualize SEED [COUNT] > vz.jsonl  # visualize + mask_to_segment_ids

COUNT is the number of attempts (default 300 / 120); attempts that hit an exception other than
ValueError / IndexError / TypeError upstream are dropped, so a file holds somewhat fewer cases.
The output is deterministic for a given SEED, mode, COUNT and ejkernel / jax / numpy version.
Checked with ejkernel 0.0.80.3 and jax 0.10.2 on CPU.
"""
import argparse, contextlib, io, json, os, platform, random, sys

# get_shardings cases build meshes of up to 8 devices: give the CPU backend 8 host devices.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import numpy as np
import jax, jax.numpy as jnp
from ejkernel.types import mask as M
from ejkernel.types.mask import MaskInfo

R = random.Random(0)  # seeded in main()
SEED = 0

def enc(x):
    if isinstance(x, MaskInfo):
        return "<MaskInfo>"
    if isinstance(x, M.MaskSharding):
        return {"MaskSharding": {k: enc_spec(getattr(x, k)) for k in x._fields}}
    if isinstance(x, tuple):
        return {"tuple": [enc(e) for e in x]}
    if isinstance(x, dict):
        return {k: enc(v) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    a = np.asarray(x)
    dt = str(a.dtype)
    def conv(v):
        if dt == "bool": return bool(v)
        if dt.startswith("int"): return int(v)
        f = float(v)
        if np.isnan(f): return "nan"
        if np.isinf(f): return "inf" if f > 0 else "-inf"
        return f
    data = conv(a) if a.ndim == 0 else np.vectorize(conv, otypes=[object])(a).tolist() if a.size else a.tolist()
    return {"dtype": dt, "shape": list(a.shape), "data": data}

def enc_spec(s):
    if s is None: return None
    out = []
    for e in s:
        if e is None: out.append(None)
        elif isinstance(e, tuple): out.append(list(e))
        else: out.append(e)
    return out

def arr(a):
    return enc(np.asarray(a))

def rids(B, S, lo=-1, hi=3):
    return np.array([[R.randint(lo, hi) for _ in range(S)] for _ in range(B)], dtype=np.int32)

def packed_ids(B, S):
    out = []
    for _ in range(B):
        row = []; seg = R.randint(0, 1)
        while len(row) < S:
            n = R.randint(1, 4)
            row += [seg] * n; seg += 1
        row = row[:S]
        npad = R.randint(0, S // 2)
        if npad: row = row[:S - npad] + [-1] * npad
        out.append(row)
    return np.array(out, dtype=np.int32)

def rmask(shape, p=0.5):
    return np.array(np.random.RandomState(R.randint(0, 10**6)).rand(*shape) < p)

def dtype_name():
    return R.choice(["bool", "int32", "float32", "float16", "bfloat16"])

DT = {"bool": jnp.bool_, "int32": jnp.int32, "float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}

def to_py(v):
    # JSON kwargs -> python values for the call
    if isinstance(v, dict) and "dtype" in v:
        return jnp.asarray(np.array(v["data"], dtype=(np.float32 if v["dtype"] in ("float16","bfloat16") else v["dtype"])), dtype=DT[v["dtype"]])
    if isinstance(v, dict) and "tuple" in v:
        return tuple(to_py(e) for e in v["tuple"])
    if isinstance(v, dict) and "mesh_axes" in v:
        return FakeMesh(v["mesh_axes"])
    return v

def FakeMesh(axes):
    from jax.sharding import Mesh
    n = 1
    for v in axes.values(): n *= v
    devs = np.array(jax.devices()[:n]).reshape(tuple(axes.values()))
    return Mesh(devs, tuple(axes.keys()))

def kw_py(kw):
    out = {}
    for k, v in kw.items():
        if k in ("dtype", "out_dtype"): out[k] = DT[v]
        else: out[k] = to_py(v)
    return out

def fn_case(i, fn, kwargs):
    f = {"segment_ids_to_mask": M.segment_ids_to_mask, "segment_ids_to_qkv_masks": M.segment_ids_to_qkv_masks,
         "mask_to_segment_ids": M.mask_to_segment_ids, "_positions_from_segments_2d": M._positions_from_segments_2d,
         "qkv_masks_to_cu_seqlens": M.qkv_masks_to_cu_seqlens, "_segment_ids_to_cu_seqlens": M._segment_ids_to_cu_seqlens,
         "cu_seqlens_to_mask": M.cu_seqlens_to_mask, "qkv_cu_seqlens_to_qkv_masks": M.qkv_cu_seqlens_to_qkv_masks,
         "qkv_cu_seqlens_to_attention_mask": M.qkv_cu_seqlens_to_attention_mask,
         "attention_mask_to_qkv_cu_seqlens": M.attention_mask_to_qkv_cu_seqlens,
         "MaskInfo.create_chunked_attention_mask": MaskInfo.create_chunked_attention_mask}[fn]
    try:
        r = f(**kw_py(kwargs))
        exp = {"return": enc(r)}
    except (ValueError, IndexError, TypeError) as e:
        exp = {"raises": type(e).__name__}
    return {"id": f"ejk-s{SEED}-{fn}-{i}", "fn": fn, "args": kwargs, "expect": exp, "note": ""}

def ctor_case():
    c = R.choice(["from_segments", "from_segments", "from_attention_mask", "from_cu_seqlens", "raw", "dynamic_init", "from_segments_pos"])
    B = R.randint(1, 3); Q = R.randint(1, 8); K = Q if R.random() < 0.6 else R.randint(1, 8)
    if c in ("from_segments", "from_segments_pos"):
        q = packed_ids(B, Q) if R.random() < 0.6 else rids(B, Q)
        kw = {"q_segment_ids": arr(q)}
        if R.random() < 0.4:
            kw["kv_segment_ids"] = arr(packed_ids(B, K) if R.random() < 0.5 else rids(B, K))
        else:
            K = Q
        if R.random() < 0.15:
            kw["is_attn_mask"] = True
            kw["q_segment_ids"] = arr(rids(B, Q, 0, 1) if R.random() < 0.7 else rids(B, Q, -1, 2))
        if c == "from_segments_pos" or R.random() < 0.2:
            kw["q_positions"] = arr(np.array([[R.randint(0, 20) for _ in range(Q)] for _ in range(B)], np.int32))
            kw["kv_positions"] = arr(np.array([[R.randint(0, 20) for _ in range(K)] for _ in range(B)], np.int32))
        return "from_segments", kw
    if c == "from_attention_mask":
        rank = R.choice([2, 3, 4, 4])
        H = R.randint(1, 2)
        shape = {2: (B, Q), 3: (B, Q, K), 4: (B, H, Q, K)}[rank]
        if rank == 4 and R.random() < 0.5:
            q = packed_ids(B, Q); kvv = q if Q == K else packed_ids(B, K)
            m = np.asarray(M.segment_ids_to_mask((jnp.asarray(q), jnp.asarray(kvv))))
            m = np.broadcast_to(m, (B, H, Q, K)).copy()
        else:
            m = rmask(shape, R.choice([0.3, 0.6, 0.9]))
        kw = {"attention_mask": arr(m if R.random() < 0.7 else m.astype(np.int32))}
        if R.random() < 0.2: kw["mask_is_valid"] = False
        return "from_attention_mask", kw
    if c == "from_cu_seqlens":
        cu = []
        for _ in range(B):
            s = R.randint(0, Q); e = R.randint(s, Q); cu += [s, e]
        kw = {"cu_seqlens_q": arr(np.array(cu, np.int32)), "max_q_len": Q}
        if R.random() < 0.4:
            cu2 = []
            for _ in range(B):
                s = R.randint(0, K); e = R.randint(s, K); cu2 += [s, e]
            kw["cu_seqlens_kv"] = arr(np.array(cu2, np.int32)); kw["max_kv_len"] = K
        return "from_cu_seqlens", kw
    if c == "raw":
        H = R.randint(1, 2)
        kw = {"_attention_mask": arr(rmask((B, H, Q, K), R.choice([0.3, 0.7])))}
        if R.random() < 0.3:
            kw["_q_segment_ids"] = arr(packed_ids(B, Q)); kw["_kv_segment_ids"] = arr(packed_ids(B, K))
        return "raw", kw
    kw = {}
    ch = R.randint(0, 3)
    if ch == 0: kw["input_ids"] = arr(rids(B, Q, 0, 9))
    elif ch == 1: kw["attention_mask"] = arr(rids(B, Q, 0, 2))
    elif ch == 2: kw["attention_mask"] = arr(rmask((B, Q)))
    else: kw["attention_mask"] = arr(rmask((B, Q, K)))
    return "dynamic_init", kw

def build(name, kw):
    k = kw_py(kw)
    if name == "raw": return MaskInfo(**k)
    return getattr(MaskInfo, name)(**k)

def rand_op(mi_shape):
    B, Q, K = mi_shape
    B = B or 1; Q = Q or 1; K = K or 1
    op = R.choice(["apply_causal", "apply_sliding_window", "apply_sliding_window", "apply_chunked", "apply_token_type_ids",
                   "apply_kv_lengths", "get_or_compute_attention_mask", "get_or_compute_segment_ids", "get_or_compute_qkv_cu_seqlens",
                   "get_or_compute_positions", "q_lens", "kv_lens", "is_multi_sequence", "is_self_attention", "__repr__",
                   "visualize", "visualize", "get_shardings", "get_shardings", "to_dtype", "materialize_attention_mask", "materialize_segment_ids",
                   "create_bias", "bias", "shape", "q_position_ids", "q_attention_mask", "get_qkv_masks", "cu_seqlens_q",
                   "attention_mask", "q_segment_ids", "kv_segment_ids", "batch_size", "baked_in_masks", "replace"])
    kw = {}
    if op == "apply_causal":
        if R.random() < 0.5: kw["offset"] = R.randint(-2, 3)
        elif R.random() < 0.5: kw["offset"] = arr(np.array([R.randint(-1, 3) for _ in range(B)], np.int32))
    elif op == "apply_sliding_window":
        kw["sliding_window"] = R.randint(0, 3) if R.random() < 0.6 else {"tuple": [R.randint(0, 3), R.randint(0, 3)]}
        mode = R.choice([None, None, "default", "decode", "prefill", "bogus"])
        if mode: kw["mode"] = mode
        if mode == "decode" or R.random() < 0.1:
            kw["index"] = R.randint(-1, Q + 1) if R.random() < 0.6 else arr(np.array([R.randint(0, Q) for _ in range(B)], np.int32))
        if R.random() < 0.3: kw["offset"] = R.randint(-1, 2)
    elif op == "apply_chunked":
        kw["chunk_size"] = R.randint(1, 4)
        if R.random() < 0.3: kw["offset"] = R.randint(-1, 2)
    elif op == "apply_token_type_ids":
        if R.random() < 0.7 and Q == K:
            kw["token_type_ids"] = arr(rids(B, Q, 0, 2))
        else:
            kw["token_type_ids"] = {"tuple": [arr(rids(B, Q, 0, 2)), arr(rids(B, K, 0, 2))]}
        if R.random() < 0.6: kw["combine"] = R.choice(["union", "intersect", "replace"])
        if R.random() < 0.4: kw["zero_policy"] = R.choice(["q", "kv", "both", "none"])
        if R.random() < 0.3: kw["update_segment_ids"] = R.random() < 0.5
    elif op == "apply_kv_lengths":
        kw["kv_lengths"] = arr(np.array([R.randint(0, K) for _ in range(B)], np.int32))
        kw["q_len"] = R.randint(1, Q)
        kw["end_index"] = arr(np.array([R.randint(0, Q) for _ in range(B)], np.int32))
        if R.random() < 0.4: kw["sliding_window"] = R.randint(1, K + 1)
    elif op in ("get_or_compute_attention_mask", "materialize_attention_mask", "to_dtype", "create_bias", "get_qkv_masks"):
        if R.random() < 0.6:
            kw["dtype"] = R.choice(["float32", "float16", "bfloat16"]) if op == "create_bias" else dtype_name()
        elif op == "to_dtype":
            kw["dtype"] = "bool"
    elif op in ("get_or_compute_segment_ids", "materialize_segment_ids"):
        if R.random() < 0.3: kw["per_head"] = True
    elif op == "get_or_compute_qkv_cu_seqlens":
        if R.random() < 0.7: kw["max_segments"] = R.randint(1, 6)
    elif op == "visualize":
        kw["return_str"] = True
        if R.random() < 0.8: kw["block_size"] = R.randint(1, 3) if R.random() < 0.7 else {"tuple": [R.randint(1, 3), R.randint(1, 3)]}
        if R.random() < 0.5: kw["charset"] = "ascii"
        if R.random() < 0.3: kw["show_segments"] = False
        if R.random() < 0.3: kw["max_rows"] = R.randint(1, 3); kw["max_cols"] = R.randint(1, 3)
        if R.random() < 0.2: kw["fit_in_screen"] = False
        if R.random() < 0.15: kw["batch"] = R.randint(0, B)
    elif op == "get_shardings":
        kw["mesh"] = {"mesh_axes": {"dp": R.choice([1, 2]), "fsdp": 1, "tp": R.choice([1, 2]), "sp": R.choice([1, 2])}}
        if R.random() < 0.2: del kw["mesh"]["mesh_axes"]["sp"]
        if R.random() < 0.5: kw["sequence_parallel"] = True
    elif op == "replace":
        ch = R.randint(0, 3)
        if ch == 0: kw["q_positions"] = arr(np.zeros((B, Q), np.int32))
        elif ch == 1: kw["batch_axis_name"] = "dp"
        elif ch == 2: kw["causal_mask_baked_in"] = True
        else: kw["_attention_mask"] = None
    return {"name": op, "kwargs": kw} if kw else {"name": op}

def mi_case(i):
    name, kw = ctor_case()
    ops = []
    for _ in range(R.randint(1, 4)):
        ops.append(None)
    try:
        m = build(name, kw)
    except (ValueError, IndexError, TypeError) as e:
        return {"id": f"ejk-s{SEED}-mi-{i}", "fn": "MaskInfo.chain", "args": {"init": {"name": name, "kwargs": kw}, "ops": []},
                "expect": {"raises": type(e).__name__, "at_op": -1}, "note": ""}
    except Exception:
        return None
    real_ops = []; returns = []
    for j in range(len(ops)):
        op = rand_op(m.shape)
        real_ops.append(op)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                f = getattr(m, op["name"])
                if callable(f) and op["name"] not in ("baked_in_masks",):
                    r = f(**kw_py(op.get("kwargs", {})))
                else:
                    r = f
        except (ValueError, IndexError, TypeError) as e:
            return {"id": f"ejk-s{SEED}-mi-{i}", "fn": "MaskInfo.chain", "args": {"init": {"name": name, "kwargs": kw}, "ops": real_ops},
                    "expect": {"raises": type(e).__name__, "at_op": j, "returns": returns, "msg": str(e)[:200]}, "note": ""}
        except Exception as e:
            return None
        if isinstance(r, MaskInfo):
            m = r; returns.append("<MaskInfo>")
        else:
            returns.append(enc(r))
    st = {k: enc(getattr(m, k)) for k in ["_attention_mask", "_q_segment_ids", "_kv_segment_ids", "_cu_seqlens_q", "_cu_seqlens_kv", "q_positions", "kv_positions"]}
    st["baked_in_masks"] = enc(m.baked_in_masks)
    st["batch_axis_name"] = enc(m.batch_axis_name)
    exp = {"returns": returns, "state": st}
    if returns and returns[-1] != "<MaskInfo>": exp["return"] = returns[-1]
    return {"id": f"ejk-s{SEED}-mi-{i}", "fn": "MaskInfo.chain", "args": {"init": {"name": name, "kwargs": kw}, "ops": real_ops},
            "expect": exp, "note": ""}

def fn_random(i):
    fn = R.choice(["segment_ids_to_mask", "segment_ids_to_qkv_masks", "mask_to_segment_ids", "mask_to_segment_ids",
                   "_positions_from_segments_2d", "qkv_masks_to_cu_seqlens", "_segment_ids_to_cu_seqlens", "cu_seqlens_to_mask",
                   "qkv_cu_seqlens_to_qkv_masks", "qkv_cu_seqlens_to_attention_mask", "attention_mask_to_qkv_cu_seqlens",
                   "MaskInfo.create_chunked_attention_mask"])
    B = R.randint(1, 3); Q = R.randint(1, 8); K = R.randint(1, 8)
    kw = {}
    if fn == "segment_ids_to_mask":
        kw["segment_ids"] = arr(rids(B, Q, -2, 3)) if R.random() < 0.5 else {"tuple": [arr(rids(B, Q)), arr(rids(B, K))]}
        kw["dtype"] = dtype_name(); kw["return_separate_masks"] = R.random() < 0.4
    elif fn == "segment_ids_to_qkv_masks":
        kw["q_segment_ids"] = arr(rids(B, Q))
        if R.random() < 0.5: kw["kv_segment_ids"] = arr(rids(B, K))
    elif fn == "mask_to_segment_ids":
        rank = R.choice([2, 3, 4, 4, 1, 5])
        shape = {1: (Q,), 2: (Q, K), 3: (B, Q, K), 4: (B, R.randint(1, 3), Q, K), 5: (1, 1, 1, Q, K)}[rank]
        m = rmask(shape, R.choice([0.2, 0.5, 0.8]))
        if rank == 4 and R.random() < 0.5:
            q = packed_ids(B, Q); kvv = packed_ids(B, K)
            m = np.broadcast_to(np.asarray(M.segment_ids_to_mask((jnp.asarray(q), jnp.asarray(kvv)))), shape).copy()
        kw["mask"] = arr(m if R.random() < 0.8 else m.astype(np.int32) * R.choice([1, -1, 2]))
        if R.random() < 0.5: kw["per_head"] = R.random() < 0.6
    elif fn == "_positions_from_segments_2d":
        kw["segment_ids"] = arr(rids(B, Q, -2, 3)); kw["pad_value"] = R.choice([-1, 2147483647, 7])
    elif fn == "qkv_masks_to_cu_seqlens":
        kw["q_mask"] = arr(rmask((B, Q)) if R.random() < 0.9 else rmask((Q,)))
        if R.random() < 0.5: kw["kv_mask"] = arr(rmask((B, K)).astype(np.int32))
    elif fn == "_segment_ids_to_cu_seqlens":
        kw["segment_ids"] = arr(rids(B, Q, -1, 6)); kw["max_segments"] = R.randint(1, 8)
    elif fn == "cu_seqlens_to_mask":
        n = R.choice([2 * B, 2 * B, 3])
        kw["cu_seqlens"] = arr(np.array([R.randint(-2, 9) for _ in range(n)], np.int32))
        kw["max_len"] = R.randint(-1, 8)
        if R.random() < 0.3: kw["dtype"] = dtype_name()
    elif fn in ("qkv_cu_seqlens_to_qkv_masks", "qkv_cu_seqlens_to_attention_mask"):
        kw["cu_seqlens_q"] = arr(np.array([R.randint(0, Q) for _ in range(2 * B)], np.int32)); kw["max_q_len"] = Q
        if R.random() < 0.5:
            kw["cu_seqlens_kv"] = arr(np.array([R.randint(0, K) for _ in range(2 * B)], np.int32)); kw["max_kv_len"] = K
    elif fn == "attention_mask_to_qkv_cu_seqlens":
        rank = R.choice([2, 3, 4, 4, 1])
        shape = {1: (Q,), 2: (B, Q), 3: (B, Q, K), 4: (B, R.randint(1, 3), Q, K)}[rank]
        kw["attention_mask"] = arr(rmask(shape, R.choice([0.1, 0.3, 0.6])))
        if R.random() < 0.6: kw["reduce_heads"] = R.choice(["first", "any", "all", "bad"])
    else:
        kw["chunk_size"] = R.randint(0, 4); kw["q_len"] = Q
        if R.random() < 0.5: kw["kv_len"] = K
        if R.random() < 0.4: kw["offset"] = R.randint(-1, 2)
        if R.random() < 0.3: kw["dtype"] = dtype_name()
    try:
        return fn_case(i, fn, kw)
    except Exception:
        return None


# ---- visualize mode
def vz(i):
    B = R.randint(1, 2); Q = R.randint(1, 40); K = Q if R.random() < 0.5 else R.randint(1, 40)
    def ids(S):
        row = []
        while len(row) < S:
            v = R.choice([-3, -2, -1, -1, 0, 1, 2, 5, 99, 100, 123, 150])
            row += [v] * R.randint(1, 8)
        return row[:S]
    q = np.array([ids(Q) for _ in range(B)], np.int32)
    kw = {"q_segment_ids": arr(q)}
    if Q != K or R.random() < 0.3: kw["kv_segment_ids"] = arr(np.array([ids(K) for _ in range(B)], np.int32))
    ops = []
    if R.random() < 0.4: ops.append({"name": "apply_causal"})
    if R.random() < 0.3: ops.append({"name": "apply_sliding_window", "kwargs": {"sliding_window": R.randint(0, 6)}})
    vk = {"return_str": True, "block_size": R.randint(1, 5) if R.random() < 0.7 else {"tuple": [R.randint(1, 5), R.randint(1, 5)]},
          "charset": R.choice(["ascii", "unicode", "other"]), "show_segments": R.random() < 0.8, "fit_in_screen": R.random() < 0.8,
          "max_rows": R.randint(1, 8), "max_cols": R.randint(1, 8), "batch": R.randint(0, B - 1)}
    ops.append({"name": "visualize", "kwargs": vk})
    m = build("from_segments", kw); returns = []
    try:
        for op in ops:
            r = getattr(m, op["name"])(**kw_py(op.get("kwargs", {})))
            if isinstance(r, MaskInfo): m = r; returns.append("<MaskInfo>")
            else: returns.append(enc(r))
    except (ValueError, IndexError, TypeError) as e:
        return {"id": f"ejk-s{SEED}-vz-{i}", "fn": "MaskInfo.chain", "args": {"init": {"name": "from_segments", "kwargs": kw}, "ops": ops}, "expect": {"raises": type(e).__name__}}
    return {"id": f"ejk-s{SEED}-vz-{i}", "fn": "MaskInfo.chain", "args": {"init": {"name": "from_segments", "kwargs": kw}, "ops": ops}, "expect": {"returns": returns}}
def m2s(i):
    rank = R.choice([2, 3, 4]); Q = R.randint(1, 40); K = R.randint(1, 40); B = R.randint(1, 2); H = R.randint(1, 3)
    shape = {2: (Q, K), 3: (B, Q, K), 4: (B, H, Q, K)}[rank]
    base = rmask((4, K), 0.5)
    m = np.zeros(shape, bool)
    flat = m.reshape(-1, Q, K)
    for s in range(flat.shape[0]):
        for r in range(Q):
            c = R.randint(0, 5)
            flat[s, r] = base[c] if c < 4 else (rmask((K,), 0.1) if c == 4 else np.zeros(K, bool))
    kw = {"mask": arr(flat.reshape(shape))}
    if R.random() < 0.5: kw["per_head"] = R.random() < 0.5
    return fn_case(i, "mask_to_segment_ids", kw)


def meta(mode, count):
    import importlib.metadata as md
    return {"id": "meta", "fn": "meta", "meta": {
        "generator": "tests/conformance/ejkernel/generate_maskinfo_vectors.py", "mode": mode, "seed": SEED,
        "attempts": count, "ejkernel": md.version("ejkernel"), "jax": jax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "devices": len(jax.devices()), "platform": jax.devices()[0].platform}}


def main():
    global SEED
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("seed", type=int)
    ap.add_argument("count", type=int, nargs="?", help="attempts (default 300 random / 120 visualize)")
    ap.add_argument("--mode", choices=["random", "visualize"], default="random")
    a = ap.parse_args()
    SEED = a.seed
    R.seed(a.seed)
    count = a.count if a.count is not None else (300 if a.mode == "random" else 120)
    print(json.dumps(meta(a.mode, count)), flush=True)
    if a.mode == "random":
        for i in range(count):
            c = mi_case(i) if R.random() < 0.65 else fn_random(i)
            if c is not None:
                print(json.dumps(c), flush=True)
        return
    # visualize mode: visualize() after from_segments (+ causal / window), and mask_to_segment_ids on
    # masks built from a few repeated rows (many equal rows and columns, up to 40 x 40).
    for i in range(a.seed * 1000, a.seed * 1000 + count):
        try:
            c = vz(i) if R.random() < 0.6 else m2s(i)
        except Exception:
            import traceback
            traceback.print_exc()
            c = None
        if c:
            print(json.dumps(c), flush=True)


if __name__ == "__main__":
    main()
