"""The HF model of an export is complete (issue 15): left-padded batches through `AutoModelForCausalLM`
equal each prompt alone, the exported tokenizers pad on the left and return no token_type_ids,
`output_hidden_states`, `logits_to_keep`, gradient checkpointing, and a generation config that makes
plain `generate(max_new_tokens=...)` warn about nothing."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from export_helpers import inputs_for, random_model, tiny_config, unique_dir

from gf_train.export.hf_dir import write_export

LENGTHS = (5, 17, 40)
STEPS = 20


def _load(out: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, local_files_only=True).eval()


def _greedy_logits(hf, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (sequences, logits [B, STEPS, V]) of HF's greedy generate with our cache."""
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=STEPS, do_sample=False, eos_token_id=None,
                      pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    return out.sequences, torch.stack(out.logits, dim=1)


@pytest.mark.parametrize("arch", ["goldfinch", "finch_c2", "finch", "llama"])
def test_left_padded_batch_through_automodel(tmp_path: Path, arch: str) -> None:
    model = random_model(tiny_config(arch=arch, vocab_size=300, n_layer=4))
    out = unique_dir(tmp_path, f"gfpad{arch}")
    write_export(inputs_for(model), out)
    hf = _load(out)
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(1, 300, (n,), generator=g) for n in LENGTHS]
    T = max(LENGTHS)
    ids = torch.zeros(3, T, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p):], mask[b, T - len(p):] = p, 1
    seqs, logits = _greedy_logits(hf, ids, mask)
    for b, p in enumerate(prompts):
        s1, l1 = _greedy_logits(hf, p.view(1, -1), None)
        assert torch.equal(seqs[b, T:], s1[0, len(p):]), b
        assert float((logits[b] - l1[0]).abs().max() / l1.abs().max()) <= 1e-5, b
        # and the native model gives the same greedy continuation
        assert torch.equal(s1, model.generate(p, STEPS, temperature=0))
    with torch.no_grad():  # the full forward with the mask: real positions equal each prompt alone
        full = hf(ids, attention_mask=mask).logits
        for b, p in enumerate(prompts):
            ref = model(p.view(1, -1))[0]
            assert float((full[b, T - len(p):] - ref).abs().max() / ref.abs().max()) <= 1e-5


@pytest.fixture(scope="module")
def bpe_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from gf_train.data.tokenizers import load_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the goldfinch sings in the morning", "a tiny model pads on the left"] * 20, trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return load_tokenizer(str(path))


@pytest.mark.parametrize("kind", ["rwkv_world", "tokenizer.json"])
def test_tokenizer_pads_left_and_generate_warns_nothing(tmp_path: Path, kind: str, bpe_tokenizer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    from gf_train.data.tokenizers import load_tokenizer

    tok = load_tokenizer("rwkv_world") if kind == "rwkv_world" else bpe_tokenizer
    vocab = 65536 if kind == "rwkv_world" else 400
    model = random_model(tiny_config(vocab_size=vocab))
    out = unique_dir(tmp_path, "gftok")
    write_export(inputs_for(model, tok), out)
    hf = _load(out)
    ht = AutoTokenizer.from_pretrained(out, trust_remote_code=True, local_files_only=True)
    assert ht.padding_side == "left" and ht.pad_token_id == tok.eos_id
    texts = ["the goldfinch sings", "a"]
    enc = ht(texts, return_tensors="pt", padding=True)
    assert set(enc) == {"input_ids", "attention_mask"}  # no token_type_ids
    assert enc.attention_mask[1, 0] == 0 and enc.attention_mask[:, -1].all()  # padding on the left
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = hf.generate(**enc, max_new_tokens=4)  # plain call: the export's generation_config.json
    msgs = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in msgs if "generat" in m.lower() or "pad" in m.lower()], msgs
    assert got.shape == (2, enc.input_ids.shape[1] + 4)
    greedy = hf.generate(**enc, max_new_tokens=4, do_sample=False)
    for b, t in enumerate(texts):
        alone = hf.generate(**ht([t], return_tensors="pt"), max_new_tokens=4, do_sample=False)
        assert greedy[b, -4:].tolist() == alone[0, -4:].tolist()


def test_hidden_states_logits_to_keep_and_gradient_checkpointing(tmp_path: Path) -> None:
    model = random_model(tiny_config(vocab_size=300))
    out = unique_dir(tmp_path, "gfhid")
    write_export(inputs_for(model), out)
    hf = _load(out)
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        res = hf(ids, output_hidden_states=True)
        assert len(res.hidden_states) == model.cfg.n_layer + 1
        assert torch.allclose(res.hidden_states[0], model.embed(ids))
        assert torch.allclose(model.head(model.ln_out(res.hidden_states[-1])), res.logits, atol=1e-5)
        assert hf(ids, logits_to_keep=3).logits.shape == (2, 3, 300)
        assert torch.allclose(hf(ids, logits_to_keep=3).logits, res.logits[:, -3:])
    # generate with hidden states: every decode step reports n_layer + 1 states of its one token
    gen = hf.generate(ids[:1], max_new_tokens=3, do_sample=False, pad_token_id=0, eos_token_id=None,
                      output_hidden_states=True, return_dict_in_generate=True)
    assert len(gen.hidden_states) == 3 and all(len(h) == model.cfg.n_layer + 1 for h in gen.hidden_states)
    assert gen.hidden_states[1][0].shape == (1, 1, model.cfg.n_embd)
    # gradient checkpointing (what HF Trainer switches on) gives the same loss and gradients
    hf.train()

    def grads() -> tuple[float, list[torch.Tensor]]:
        hf.zero_grad()
        loss = hf(ids, labels=ids).loss
        loss.backward()
        return loss.item(), [p.grad.clone() for p in hf.parameters() if p.grad is not None]  # (time_faaaa: unused)

    plain = grads()
    assert hf.supports_gradient_checkpointing and not hf.is_gradient_checkpointing
    hf.gradient_checkpointing_enable()
    assert hf.is_gradient_checkpointing and hf.model.cfg.grad_cp
    ckpt = grads()
    assert plain[0] == ckpt[0] and len(plain[1]) == len(ckpt[1]) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain[1], ckpt[1]))
    hf.gradient_checkpointing_disable()
    assert not hf.is_gradient_checkpointing


def test_trainer_with_gradient_checkpointing(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="HF Trainer needs accelerate")
    from transformers import Trainer, TrainingArguments

    model = random_model(tiny_config(vocab_size=300))
    out = unique_dir(tmp_path, "gftrain")
    write_export(inputs_for(model), out)
    hf = _load(out)
    ids = torch.randint(0, 300, (8, 12), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "t"), max_steps=3, per_device_train_batch_size=4,
                             gradient_checkpointing=True, report_to=[], use_cpu=True, save_strategy="no",
                             learning_rate=1e-3)
    before = hf(ids, labels=ids).loss.item()
    Trainer(model=hf, args=args, train_dataset=data).train()
    assert hf.model.cfg.grad_cp
    hf.eval()
    with torch.no_grad():
        assert hf(ids, labels=ids).loss.item() < before
