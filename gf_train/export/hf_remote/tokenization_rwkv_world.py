"""RWKV "World" tokenizer (rwkv_vocab_v20230424) for `AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)`.

Copied into an export folder by `gf-train export` next to the vocab file. Greedy longest match over
the byte vocabulary (the RWKV trie tokenizer's rule); token 0 is `<|endoftext|>`. Uses the Rust
`pyrwkv_tokenizer` when it is installed and the vocab is the standard one, else a pure-Python matcher
over the bundled vocab file (same ids). Tokens are shown as their bytes read as Latin-1 (one char per
byte), so every token has a distinct string form.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
from typing import Any

from transformers import PreTrainedTokenizer

VOCAB_NAME = "rwkv_vocab_v20230424.txt"
EOS = "<|endoftext|>"


def read_vocab(path: str) -> dict[int, bytes]:
    """`id repr(token) length` per line; the repr is a Python str or bytes literal."""
    out: dict[int, bytes] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            idx = int(line[: line.index(" ")])
            tok = ast.literal_eval(line[line.index(" ") + 1: line.rindex(" ")])
            tok = tok.encode("utf-8") if isinstance(tok, str) else tok
            if len(tok) != int(line[line.rindex(" ") + 1:]):
                raise ValueError(f"{path}: token {idx} has a wrong length field")
            out[idx] = tok
    return out


class GreedyBytes:
    """Longest-prefix match over a byte vocabulary (what the RWKV trie computes)."""

    def __init__(self, vocab: dict[int, bytes]) -> None:
        self.to_id = {b: i for i, b in vocab.items()}
        self.max_len = max(len(b) for b in vocab.values())

    def encode(self, data: bytes) -> list[int]:
        ids, pos, n = [], 0, len(data)
        while pos < n:
            for length in range(min(self.max_len, n - pos), 0, -1):
                idx = self.to_id.get(data[pos: pos + length])
                if idx is not None:
                    ids.append(idx)
                    pos += length
                    break
            else:
                raise ValueError(f"byte {data[pos]:#x} is not in the vocabulary")
        return ids


class RWKVWorldTokenizer(PreTrainedTokenizer):
    vocab_files_names = {"vocab_file": VOCAB_NAME}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, **kwargs: Any) -> None:
        self.vocab_file = vocab_file
        self.id_to_bytes = read_vocab(vocab_file)
        self.id_to_bytes[0] = EOS.encode()
        self.encoder = {b.decode("latin-1"): i for i, b in self.id_to_bytes.items()}
        self._matcher = GreedyBytes({i: b for i, b in self.id_to_bytes.items() if i != 0})
        self._rust = None
        try:
            import pyrwkv_tokenizer

            bundled = os.path.join(os.path.dirname(pyrwkv_tokenizer.__file__), VOCAB_NAME)
            if os.path.isfile(bundled) and _sha(bundled) == _sha(vocab_file):
                self._rust = pyrwkv_tokenizer.RWKVTokenizer()
        except Exception:
            self._rust = None
        kwargs.setdefault("eos_token", EOS)
        kwargs.setdefault("bos_token", EOS)
        kwargs.setdefault("unk_token", None)
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return max(self.id_to_bytes) + 1

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        ids = self._rust.encode(text) if self._rust is not None else self._matcher.encode(text.encode("utf-8"))
        return [self.id_to_bytes[i].decode("latin-1") for i in ids]

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self.id_to_bytes[int(index)].decode("latin-1")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return b"".join(t.encode("latin-1") for t in tokens).decode("utf-8", errors="replace")

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_NAME
        dest = os.path.join(save_directory, name)
        if os.path.abspath(dest) != os.path.abspath(self.vocab_file):
            shutil.copyfile(self.vocab_file, dest)
        return (dest,)


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
