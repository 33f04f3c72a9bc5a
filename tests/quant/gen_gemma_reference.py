#!/usr/bin/env python3
"""Digests of sampled dequantized rows of every tensor of the Gemma 3 270M Q4_K_M file.

Needs python3 with the gguf package installed (pip install gguf==0.19.0 numpy): its GGUFReader reads the file
and its numpy dequantizer (gguf.quants.dequantize) decodes the rows, independently of piecrust.

    python3 tests/quant/gen_gemma_reference.py [MODEL] > tests/data/gemma3_270m_rows.txt

MODEL defaults to $PIECRUST_GEMMA_MODEL, else ~/.cache/piecrust/models/gemma-3-270m-q4_k_m.gguf (fetched by
scripts/fetch-model.sh gemma3-270m). One line per tensor, in file order:
    <name> <type name> <dims, ggml order, comma-separated> <sampled rows, comma-separated> <sha256>
A tensor's rows have dims[0] values each; the sampled rows are i * (rows - 1) // 8 for i = 0..8 (first, last and
seven evenly spaced, duplicates dropped), and the digest is SHA-256 of their f32 values' little-endian bytes,
row after row. tests/unit/test_gemma_tensors.cpp recomputes every digest with piecrust.
"""

import hashlib
import os
import sys
from importlib.metadata import version

import numpy as np
from gguf import GGUFReader
from gguf import quants


def sampled_rows(rows):
    return sorted({i * (rows - 1) // 8 for i in range(9)})


def main():
    default = os.environ.get("PIECRUST_GEMMA_MODEL") or os.path.expanduser(
        "~/.cache/piecrust/models/gemma-3-270m-q4_k_m.gguf")
    path = sys.argv[1] if len(sys.argv) > 1 else default
    reader = GGUFReader(path)
    out = sys.stdout
    out.write(f"# Gemma 3 270M Q4_K_M (gemma-3-270m-q4_k_m.gguf): sampled rows of each of its {len(reader.tensors)} "
              f"tensors dequantized by gguf {version('gguf')} (tests/quant/gen_gemma_reference.py)\n")
    out.write("# name type dims rows sha256\n")
    for t in reader.tensors:
        dims = [int(d) for d in t.shape]  # ggml order: dims[0] is the row length
        cols = dims[0]
        rows = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
        raw = np.asarray(t.data)
        if t.tensor_type.name in ("F32", "F16", "BF16"):
            # The reader returns plain types as values; view them as their bytes, one row a line.
            raw = raw.reshape(rows, cols).view(np.uint8).reshape(rows, -1)
        else:
            raw = raw.reshape(rows, -1)
        pick = sampled_rows(rows)
        values = quants.dequantize(np.ascontiguousarray(raw[pick]), t.tensor_type).astype("<f4")
        assert values.shape == (len(pick), cols), (t.name, values.shape)
        digest = hashlib.sha256(values.tobytes()).hexdigest()
        out.write(f"{t.name} {t.tensor_type.name} {','.join(map(str, dims))} {','.join(map(str, pick))} {digest}\n")


if __name__ == "__main__":
    main()
