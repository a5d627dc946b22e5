"""Hugging Face causal-LM wrapper around the bundled gf-train model (GoldFinch / Finch / Llama baseline).

Copied into the export folder by `gf-train export`; loaded with
`AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`. The network is gf-train's own code
(bundled flat next to this file by `gf-train export`, which replaces the `from .gf_bundle` line
below with one import per bundled module); weights sit under the `model.` prefix.

Generation goes through HF's loop with gf-train's own inference state as the cache: the `ModelCache`
holding the compressed GOLD key cache (c = C/16 numbers + a token id per position) and the fixed-size
Finch states. HF never builds a `DynamicCache` for this class (stateful, no default cache); the prompt is
pre-filled once (`model.prefill`) and each new token is one `model.decode` step. Works with transformers
4.44+ and 5.x: 5.x renamed the cache argument and output field `past_key_values` to `cache`, so both
names are accepted and the output uses the one this transformers has (`CACHE_NAME`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_goldfinch import GoldFinchConfig
from .gf_bundle import ModelConfig, build_model

# Backends whose code is bundled: Triton kernels are not (a loader may have no Triton).
EXPORT_BACKENDS = {"wkv_backend": "torch"}
# the cache's name in model outputs and generate's model kwargs: "cache" in transformers >= 5.2x
CACHE_NAME = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


def model_config_from_hf(config: GoldFinchConfig) -> Any:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    fields = {k: v for k, v in config.gf_model.items() if k in names}
    fields.update(EXPORT_BACKENDS)
    return ModelConfig(**fields)


class GoldFinchForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = GoldFinchConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True  # our own cache object: HF must not create a DynamicCache
    _no_split_modules: list[str] = []
    supports_gradient_checkpointing = False

    def __init__(self, config: GoldFinchConfig) -> None:
        super().__init__(config)
        # transformers >= 5 builds the model under a meta-device context and then loads the weights into
        # it: build on that device (meta: no init, nothing allocated); from_config builds on CPU, with init
        device = torch.empty(0).device
        self.model = build_model(model_config_from_hf(config), device=device)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # transformers 5 no longer infers this from _is_stateful

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Weights come from model.safetensors (gf-train's own init runs in build_model)."""

    def get_input_embeddings(self) -> torch.nn.Module | None:
        return getattr(self.model, "emb", None)

    def get_output_embeddings(self) -> torch.nn.Module | None:
        return getattr(self.model, "head", None)

    def _step(self, input_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Continue `cache` with new tokens: one decode step per token (the recurrent / O(N) path)."""
        logits = []
        for t in range(input_ids.shape[1]):
            out, cache = self.model.decode(input_ids[:, t], cache)
            logits.append(out.reshape(input_ids.shape[0], -1))
        return torch.stack(logits, dim=1), cache

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("gf-train models do not support padding (attention_mask with zeros); "
                             "generate one sequence at a time or left-pad-free batches of equal length")
        if past_key_values is None:
            past_key_values = kwargs.get("cache")  # transformers >= 5.2x
        cache = None
        if past_key_values is not None:
            logits, cache = self._step(input_ids, past_key_values)
        elif use_cache and labels is None and logits_to_keep == 1:
            last, cache = self.model.prefill(input_ids)
            logits = last.reshape(input_ids.shape[0], 1, -1)
        else:
            logits = self.model(input_ids)
            if use_cache:
                _, cache = self.model.prefill(input_ids)
        if logits_to_keep and logits.shape[1] > logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        if return_dict is False:
            return (loss, logits, cache) if loss is not None else (logits, cache)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_NAME: cache})

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if past_key_values is None:
            past_key_values = kwargs.get("cache")  # transformers >= 5.2x
        if past_key_values is not None:
            input_ids = input_ids[:, int(past_key_values.n_tokens):]
        inputs: dict[str, Any] = {"input_ids": input_ids, CACHE_NAME: past_key_values,
                                  "use_cache": use_cache, "attention_mask": attention_mask}
        if "logits_to_keep" in kwargs:
            inputs["logits_to_keep"] = kwargs["logits_to_keep"]
        return inputs

    def _reorder_cache(self, past_key_values: Any, beam_idx: torch.LongTensor) -> Any:
        return past_key_values.select(beam_idx)
