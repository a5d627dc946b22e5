"""Source files copied verbatim into every export folder for `trust_remote_code=True`.

Owner: `gf_train.export`. These are the thin Hugging Face wrappers (config, causal-LM wrapper,
tokenizer); the model itself is bundled from gf-train's own source by `gf_train.export.bundle`.
They import their siblings relatively (`from .gf_bundle import ...`), which only exist inside an
export folder, so they are not importable from this package.
"""
