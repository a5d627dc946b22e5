"""Tokenizers for data preparation and export: RWKV World and local Hugging Face `tokenizers` files.

Owns `load_tokenizer(spec, eos=None)` and the `Tokenizer` interface used by `gf_train.data.tokenize`,
`gf_train.data.inspect` and the exporter. Nothing here downloads anything.

Specs:
* `rwkv_world`: the RWKV World vocab (rwkv_vocab_v20230424, bundled with pyrwkv-tokenizer). The model
  vocab is 65536; ids 1..65529 are tokens, id 0 is the end-of-text/document separator (RWKV-LM's
  convention). `save(dir)` writes `rwkv_vocab_v20230424.txt`.
* a path to a `tokenizer.json` (HF tokenizers), or a folder holding one (its `tokenizer_config.json`
  names the EOS token). A folder with only slow-tokenizer files (vocab.json + merges.txt, ...) is
  converted with `transformers.AutoTokenizer(local_files_only=True)`. `save(dir)` writes `tokenizer.json`.

EOS: `eos` may be a token id or a token string. Without it: rwkv_world -> 0; HF -> the folder's
`eos_token`, else the first of <|endoftext|>, </s>, <|end_of_text|>, <eos>, <|eos|> in the vocab.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

RWKV_WORLD = "rwkv_world"
RWKV_VOCAB_FILE = "rwkv_vocab_v20230424.txt"
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")


class Tokenizer:
    """Interface: encode/encode_batch/decode, eos_id, vocab_size (ids are < vocab_size), name, save()."""

    name: str
    spec: str
    vocab_size: int
    eos_id: int
    vocab_hash: str  # sha256 (hex, 16 chars) of the vocab definition: identical ids <=> identical hash

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def save(self, directory: str | Path) -> list[Path]:
        """Write the files a user needs to tokenize like this (shipped with exported models)."""
        raise NotImplementedError

    def info(self) -> dict[str, object]:
        return {"name": self.name, "spec": self.spec, "vocab_size": self.vocab_size, "eos_id": self.eos_id,
                "vocab_hash": self.vocab_hash}


class RwkvWorldTokenizer(Tokenizer):
    def __init__(self, eos: int | str | None = None) -> None:
        import pyrwkv_tokenizer

        self._vocab_path = Path(pyrwkv_tokenizer.__file__).parent / RWKV_VOCAB_FILE
        self._tok = pyrwkv_tokenizer.RWKVTokenizer()
        self._n = int(self._tok.vocab_size())  # 65530 lines: ids 1..65529 (plus 0 = end of text)
        self.name, self.spec, self.vocab_size = RWKV_WORLD, RWKV_WORLD, 65536
        self.vocab_hash = hashlib.sha256(self._vocab_path.read_bytes()).hexdigest()[:16]
        if eos is None:
            self.eos_id = 0
        elif isinstance(eos, int) or str(eos).isdigit():
            self.eos_id = int(eos)
        else:
            ids = self._tok.encode(str(eos))
            if len(ids) != 1:
                raise ValueError(f"--eos {eos!r} is not a single rwkv_world token; pass a token id (default 0)")
            self.eos_id = ids[0]
        if not 0 <= self.eos_id < self.vocab_size:
            raise ValueError(f"--eos id {self.eos_id} is outside the rwkv_world vocab [0, {self.vocab_size})")

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._tok.encode_batch(texts)

    def decode(self, ids: list[int]) -> str:
        ids = [int(i) for i in ids if int(i) != 0]  # id 0 is end-of-text and has no bytes
        bad = [i for i in ids if not 0 < i < self._n]
        if bad:
            raise ValueError(f"ids {bad[:5]} are not rwkv_world tokens (valid: 1..{self._n - 1}, 0 = end of text)")
        return self._tok.decode(ids)

    def save(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        dst = d / RWKV_VOCAB_FILE
        shutil.copyfile(self._vocab_path, dst)
        return [dst]


class HFTokenizer(Tokenizer):
    def __init__(self, spec: str, eos: int | str | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(spec).expanduser()
        config_eos: str | None = None
        if path.is_dir():
            cfg = path / "tokenizer_config.json"
            if cfg.is_file():
                raw = json.loads(cfg.read_text(encoding="utf-8")).get("eos_token")
                config_eos = raw.get("content") if isinstance(raw, dict) else raw
            if (path / "tokenizer.json").is_file():
                self._tok = HFTokenizer.from_file(str(path / "tokenizer.json"))
            else:
                self._tok = _from_transformers(path)
        else:
            try:
                self._tok = HFTokenizer.from_file(str(path))
            except Exception as e:  # tokenizers raises its own Exception type with the serde message
                raise ValueError(f"tokenizer file {path} is not a valid tokenizer.json: {e}") from e
        self.name, self.spec = f"hf:{path.name}", str(path)
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(self._tok.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
        self.vocab_hash = hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()[:16]
        if eos is None:
            names = ([config_eos] if config_eos else []) + list(_EOS_CANDIDATES)
            found = [vocab[n] for n in names if n in vocab]
            if not found:
                raise ValueError(f"tokenizer {path} has none of the usual EOS tokens {_EOS_CANDIDATES}; "
                                 "pass --eos with a token string or id")
            self.eos_id = found[0]
        elif isinstance(eos, int) or str(eos).isdigit():
            self.eos_id = int(eos)
        elif str(eos) in vocab:
            self.eos_id = vocab[str(eos)]
        else:
            raise ValueError(f"--eos {eos!r} is not a token of {path}; pass a token string from its vocab or an id")
        if not 0 <= self.eos_id < self.vocab_size:
            raise ValueError(f"--eos id {self.eos_id} is outside the vocab [0, {self.vocab_size}) of {path}")

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        dst = d / "tokenizer.json"
        self._tok.save(str(dst))
        return [dst]


def _from_transformers(path: Path) -> object:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True)
    except Exception as e:
        raise ValueError(f"tokenizer folder {path} has no tokenizer.json and transformers could not load it "
                         f"offline ({type(e).__name__}: {e}); save it with tokenizer.save_pretrained() first") from e
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"tokenizer folder {path} has only a slow tokenizer; convert it to tokenizer.json")
    return tok.backend_tokenizer


def load_tokenizer(spec: str, eos: int | str | None = None) -> Tokenizer:
    """`rwkv_world`, a tokenizer.json path, or a local HF tokenizer folder (see module docstring)."""
    if spec == RWKV_WORLD:
        return RwkvWorldTokenizer(eos)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"tokenizer {spec!r} does not exist; pass 'rwkv_world', a path to a tokenizer.json, "
                         "or a folder holding one (nothing is downloaded)")
    return HFTokenizer(str(path), eos)


def token_dtype(vocab_size: int) -> str:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"
