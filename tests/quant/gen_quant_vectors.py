#!/usr/bin/env python3
"""Dequantization vectors for every quantized GGUF type piecrust reads, recorded from an independent decoder.

Needs python3 with the gguf package installed (pip install gguf==0.19.0 numpy): its numpy dequantizer
(gguf.quants.dequantize) is the oracle, and its quantizer (gguf.quants.quantize) makes the blocks that come
from real floats for the types it can quantize.

    python3 tests/quant/gen_quant_vectors.py [--seed N] [--out tests/data/quant_vectors]

Writes <out>/<type>.txt, one block a line:
    <kind> <block bytes, hex> <expected f32 values, 8 hex digits of IEEE bits each, in order>
kind: "random" (random bytes, every f16 scale moderate and finite), "extreme" (f16 scales near the f16 range's
ends: the largest finite values and subnormals), "zero" (f16 scales +0 / -0), "quantized" (quantized from random
floats by the package's quantizer). Lines starting with '#' are comments. The C++ test
(tests/unit/test_quant_blocks.cpp) decodes each block with piecrust and compares the bits exactly.
"""

import argparse
import os
import sys
from importlib.metadata import version

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

# Per type: (file name, block bytes, byte offsets of its f16 scale fields). Facts from the GGUF
# specification / ggml-common.h, stated here independently of piecrust's headers.
TYPES = [
    ("q4_0", T.Q4_0, 18, [0]),
    ("q4_1", T.Q4_1, 20, [0, 2]),
    ("q5_0", T.Q5_0, 22, [0]),
    ("q5_1", T.Q5_1, 24, [0, 2]),
    ("q8_0", T.Q8_0, 34, [0]),
    ("q2_k", T.Q2_K, 84, [80, 82]),
    ("q3_k", T.Q3_K, 110, [108]),
    ("q4_k", T.Q4_K, 144, [0, 2]),
    ("q5_k", T.Q5_K, 176, [0, 2]),
    ("q6_k", T.Q6_K, 210, [208]),
    ("iq4_nl", T.IQ4_NL, 18, [0]),
    ("iq4_xs", T.IQ4_XS, 136, [0]),
]
QUANTIZABLE = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


def f16_bits(rng, exponents, n):
    """n f16 bit patterns: random sign and mantissa, biased exponent drawn from `exponents`."""
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    exp = rng.choice(np.array(exponents, dtype=np.uint16), n) << 10
    mant = rng.integers(0, 1024, n, dtype=np.uint16)
    return (sign | exp | mant).astype(np.uint16)


def random_blocks(rng, size, fields, n, exponents):
    """n blocks of random bytes whose f16 fields get exponents from `exponents` (None: +0 / -0)."""
    blocks = rng.integers(0, 256, (n, size), dtype=np.uint8)
    for off in fields:
        if exponents is None:
            h = (rng.integers(0, 2, n, dtype=np.uint16) << 15).astype(np.uint16)
        else:
            h = f16_bits(rng, exponents, n)
        blocks[:, off] = (h & 0xFF).astype(np.uint8)
        blocks[:, off + 1] = (h >> 8).astype(np.uint8)
    return blocks


def line(kind, block, values):
    bits = values.astype(np.float32).view(np.uint32)
    assert np.all(np.isfinite(values)), kind
    return f"{kind} {block.tobytes().hex()} {''.join(f'{b:08x}' for b in bits)}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                                  "quant_vectors"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, qtype, size, fields in TYPES:
        elems, bytes_per_block = quants.GGML_QUANT_SIZES[qtype]
        assert bytes_per_block == size, (name, bytes_per_block, size)
        small = elems == 32
        groups = [
            # moderate: |scale| in [2^-10, 2^-4)
            ("random", random_blocks(rng, size, fields, 16 if small else 6, range(5, 11))),
            # largest finite f16 (exponents 29, 30) and subnormals (exponent 0)
            ("extreme", random_blocks(rng, size, fields, 4 if small else 2, [0, 29, 30])),
            ("zero", random_blocks(rng, size, fields, 2, None)),
        ]
        if qtype in QUANTIZABLE:
            x = (rng.standard_normal((14, elems)) * rng.uniform(0.01, 4.0, (14, 1))).astype(np.float32)
            x[0, :] = 0.0  # an all-zero block: scale 0
            groups.append(("quantized", quants.quantize(x, qtype).reshape(14, size)))
        path = os.path.join(args.out, f"{name}.txt")
        with open(path, "w") as f:
            f.write(f"# {name}: {elems} weights in {size} bytes per block; expected values from gguf "
                    f"{version('gguf')} quants.dequantize, seed {args.seed} (tests/quant/gen_quant_vectors.py)\n")
            for kind, blocks in groups:
                values = quants.dequantize(blocks, qtype).reshape(blocks.shape[0], elems)
                for b, v in zip(blocks, values):
                    f.write(line(kind, b, v))
        total += os.path.getsize(path)
        print(f"{path}: {os.path.getsize(path)} bytes", file=sys.stderr)
    print(f"total {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
