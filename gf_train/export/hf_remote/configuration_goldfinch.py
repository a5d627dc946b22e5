"""Hugging Face config for a gf-train export (GoldFinch, Finch, Finch-C2 or the Llama baseline).

Copied into the export folder by `gf-train export`; loaded with
`AutoConfig.from_pretrained(DIR, trust_remote_code=True)`. The exact gf-train `ModelConfig` fields are
kept under `gf_model`; the usual HF names (`hidden_size`, `num_hidden_layers`, ...) mirror them.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class GoldFinchConfig(PretrainedConfig):
    model_type = "goldfinch"

    def __init__(self, gf_model: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.gf_model = dict(gf_model or {})
        m = self.gf_model
        kwargs.setdefault("tie_word_embeddings", False)
        for hf_name, gf_name in (("vocab_size", "vocab_size"), ("hidden_size", "n_embd"),
                                 ("num_hidden_layers", "n_layer"), ("max_position_embeddings", "ctx_len")):
            if gf_name in m:
                kwargs[hf_name] = m[gf_name]
        if "n_embd" in m and "head_size" in m:
            kwargs["num_attention_heads"] = m["n_embd"] // m["head_size"]
        super().__init__(**kwargs)
