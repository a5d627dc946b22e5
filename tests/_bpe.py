"""A small byte-level BPE `tokenizer.json` trained on the spot: the "other tokenizer" of the tokenizer-identity
tests (its vocabulary hash differs from rwkv_world's)."""

from __future__ import annotations

from pathlib import Path


def save_bpe_tokenizer(path: Path, texts: list[str], vocab_size: int = 300) -> Path:
    """Train a byte-level BPE on `texts` (with `<|endoftext|>`) and save it as `path` (a tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return path
