"""Hugging Face causal-LM wrapper around the bundled gf-train model (GoldFinch / Finch / Llama baseline).

Copied into the export folder by `gf-train export`; loaded with
`AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`. The network is gf-train's own code
(bundled flat next to this file by `gf-train export`, which replaces the `from .gf_bundle` line
below with one import per bundled module); weights sit under the `model.` prefix.

Generation goes through HF's loop with gf-train's own inference state as the cache: the `ModelCache`
(GOLD layers: per-layer k/v in `kv` mode, or the paper's compressed key cache, c = C/16 numbers + a
token id per position, in `compressed` mode: `config.gf_model["cache_mode"]`) and the fixed-size Finch
states. HF never builds a `DynamicCache` for this class (stateful, no default cache); the prompt is
pre-filled once and each new token is one decode step, both through
`gf_train.model.generate.continue_cache` (the same code as `gf-train generate`). Left-padded batches
(`attention_mask`, the exported tokenizer pads on the left) give each row what it gives alone.
`output_hidden_states`, `logits_to_keep` and gradient checkpointing (HF `Trainer`) are supported.
Works with transformers 4.44+ and 5.x: 5.x renamed the cache argument and output field
`past_key_values` to `cache`, so both names are accepted and the output uses the one this transformers
has (`CACHE_NAME`).
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
from .gf_train_model_generate import continue_cache

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
    supports_gradient_checkpointing = True

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

    # ---- gradient checkpointing (HF Trainer calls these): gf-train's per-block activation checkpointing
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        self.model.cfg.grad_cp = True

    def gradient_checkpointing_disable(self) -> None:
        self.model.cfg.grad_cp = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self.model.cfg.grad_cp)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """input_ids [B, T]; attention_mask [B, N + T] (1 = token, 0 = left padding; HF convention).

        logits_to_keep: 0 = all positions, n = the last n, or a 1-D tensor of positions to keep."""
        if past_key_values is None:
            past_key_values = kwargs.get("cache")  # transformers >= 5.2x
        if not logits_to_keep and kwargs.get("num_logits_to_keep"):  # transformers 4.45 - 4.49
            logits_to_keep = kwargs["num_logits_to_keep"]
        want_hidden = bool(output_hidden_states if output_hidden_states is not None
                           else self.config.output_hidden_states)
        use_cache = bool(use_cache) and not (self.training and self.model.cfg.grad_cp)
        hidden: list[torch.Tensor] | None = [] if want_hidden else None
        cache = None
        T = input_ids.shape[1]
        mask = None if attention_mask is None else attention_mask[:, -T:]
        only_last = isinstance(logits_to_keep, int) and logits_to_keep == 1
        if past_key_values is not None and T == 1 and hidden is not None:
            logits, cache = self.model.decode(input_ids[:, 0], past_key_values, hidden_states=hidden)
            logits = logits.unsqueeze(1)
        elif past_key_values is not None:
            logits, cache = continue_cache(self.model, input_ids, past_key_values, mask)
        elif use_cache and labels is None and only_last and hidden is None:
            logits, cache = continue_cache(self.model, input_ids, None, mask)
        else:
            logits = self.model(input_ids, attention_mask=mask, hidden_states=hidden)
            if use_cache:
                _, cache = continue_cache(self.model, input_ids, None, mask)
        if isinstance(logits_to_keep, torch.Tensor):
            logits = logits[:, logits_to_keep]
        elif logits_to_keep and logits.shape[1] > logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        hidden_states = tuple(hidden) if hidden is not None else None
        if return_dict is False:
            out = (logits, cache) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + out) if loss is not None else out
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=hidden_states, **{CACHE_NAME: cache})

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
        for name in ("logits_to_keep", "num_logits_to_keep", "output_hidden_states"):
            if name in kwargs:
                inputs[name] = kwargs[name]
        return inputs

    def _reorder_cache(self, past_key_values: Any, beam_idx: torch.LongTensor) -> Any:
        return past_key_values.select(beam_idx)
