"""The two routes users would otherwise take from a jsonl corpus to training data, for bench_tokenize.py.

Each is written minimally and faithfully after its original (same input file, same tokenizer, same token
count as `data_prep/tokenize.py`), runs in one process (neither original has workers), gets its tokenizer
already loaded (as tokenize.py's timed runs have theirs), and returns the tokens it stored, EOS included.

* `rwkv_lm_make_data(jsonl, prefix, rust_encoder(spec), eos)`: RWKV-LM's `RWKV-v5/make_data.py` with a
  Rust tokenizer (pyrwkv-tokenizer, or HF `tokenizers` for a tokenizer.json) in place of its pure-Python
  TRIE_TOKENIZER: each non-empty line parsed with `json.loads`, its "text" encoded alone (one `encode`
  call per document), EOS appended, written as a uint16 array to `<prefix>.bin`; the `.idx` of
  Megatron's MMapIndexedDataset ("binidx": sizes, byte pointers, document index) at the end. Left out,
  to the peer's advantage: its shuffled copy of the input (make_data_temp.jsonl) and its decode check of
  every document.
* `llm_foundry_convert_json(jsonl, out_dir, foundry_tokenizer(spec), eos, seq_len + 1)`: llm-foundry's
  `scripts/data_prep/convert_dataset_json.py --concat_tokens N`: `datasets.load_dataset("json")` (a fresh
  cache: the file's first use), each document tokenized alone (`tokenizer(text, truncation=False,
  padding=False)` of a transformers fast tokenizer; for rwkv_world, which has none, the Rust `encode`),
  EOS appended, concatenated in a buffer cut into fixed-length samples (its ConcatTokensDataset), written
  by `streaming.MDSWriter` with the column {"tokens": "ndarray:int32"} and zstd compression (as
  tokenize.py's shards).
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def rust_encoder(spec: str) -> Callable[[str], list[int]]:
    """The tokenizer library's own per-document encode (pyrwkv-tokenizer, or HF `tokenizers`)."""
    if spec == "rwkv_world":
        import pyrwkv_tokenizer

        return pyrwkv_tokenizer.RWKVTokenizer().encode
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(spec)
    return lambda text: tok.encode(text).ids


def foundry_tokenizer(spec: str) -> Callable[[str], list[int]]:
    """What convert_dataset_json.py calls per document: a transformers fast tokenizer (AutoTokenizer) on a
    tokenizer.json; rwkv_world has none, so the Rust encode (the same work without transformers' wrapper)."""
    if spec == "rwkv_world":
        return rust_encoder(spec)
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_file=spec)
    hf.model_max_length = int(1e30)  # as the script: lengths are enforced by the concatenation
    return lambda text: hf(text, truncation=False, padding=False)["input_ids"]


def _write_binidx_index(path: Path, sizes: list[int], doc_idx: list[int]) -> None:
    """Megatron's MMapIndexedDataset index (RWKV-LM src/binidx.py `Index.writer`) for uint16 tokens."""
    sizes_a = np.asarray(sizes, np.int32)
    pointers = np.zeros(len(sizes), np.int64)
    np.cumsum(sizes_a[:-1] * 2, out=pointers[1:])  # byte offset of each item (uint16: 2 bytes per token)
    with open(path, "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", 8))  # dtype code 8 = uint16
        f.write(struct.pack("<Q", len(sizes)))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(sizes_a.tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))
        f.write(np.asarray(doc_idx, np.int64).tobytes(order="C"))


def rwkv_lm_make_data(jsonl: Path, out_prefix: Path, encode: Callable[[str], list[int]], eos: int) -> int:
    sizes: list[int] = []
    doc_idx = [0]
    with open(jsonl, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    with open(f"{out_prefix}.bin", "wb") as data:
        for line in lines:
            out = encode(json.loads(line)["text"])
            out.append(eos)  # end of document
            arr = np.array(out, dtype=np.uint16)
            data.write(arr.tobytes(order="C"))
            sizes.append(arr.size)
            doc_idx.append(len(sizes))
    _write_binidx_index(Path(f"{out_prefix}.idx"), sizes, doc_idx)
    return sum(sizes)


def llm_foundry_convert_json(jsonl: Path, out_dir: Path, tokenize: Callable[[str], list[int]], eos: int,
                             sample_tokens: int) -> int:
    import datasets
    from streaming import MDSWriter  # the caller ran gf_train.data.compat.ensure_torchvision()

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="hf_cache_") as cache:
        ds = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=cache)
        total = 0
        with MDSWriter(columns={"tokens": "ndarray:int32"}, out=str(out_dir), compression="zstd") as out:
            buffer: list[int] = []
            for sample in ds:
                iids = tokenize(sample["text"])
                buffer = buffer + iids + [eos]
                total += len(iids) + 1
                while len(buffer) >= sample_tokens:
                    out.write({"tokens": np.asarray(buffer[:sample_tokens], dtype=np.int32)})
                    buffer = buffer[sample_tokens:]
    return total
