"""Run in a bare consumer environment (torch + the *other* transformers major, no gf-train): load an
export folder with `trust_remote_code`, and write what it computes for `test_hf_other_transformers.py`.

    python _consumer_check.py EXPORT_DIR CASE_JSON OUT_DIR

CASE_JSON: {"ids": [[...]], "prompt_len": n, "text": "..."}. Writes OUT_DIR/logits.npy (logits of `ids`),
greedy.npy (the first row's first prompt_len ids + 6 new tokens with our cache) and info.json
(transformers version, whether gf_train is importable, beam search with vs without cache equal, the
tokenizer's ids for `text` and its round trip, a left-padded batch generating what each row generates alone).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    src, case, out = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
    hf = AutoModelForCausalLM.from_pretrained(src, trust_remote_code=True, local_files_only=True).eval()
    ids = torch.tensor(case["ids"])
    with torch.no_grad():
        np.save(out / "logits.npy", hf(ids).logits.float().numpy())
    prompt = ids[:1, :case["prompt_len"]]
    greedy = hf.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    np.save(out / "greedy.npy", greedy.numpy())
    kw = {"max_new_tokens": 4, "num_beams": 3, "num_return_sequences": 3, "do_sample": False,
          "eos_token_id": None, "pad_token_id": 0}
    beams = hf.generate(prompt, use_cache=True, **kw)
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=True, local_files_only=True)
    text = case["text"]
    # a left-padded batch from the exported tokenizer: each row generates what it generates alone
    texts = [text[:40], text[:7]]
    enc = tok(texts, return_tensors="pt", padding=True)
    batch = hf.generate(**enc, max_new_tokens=5, do_sample=False)
    alone = [hf.generate(**tok([t], return_tensors="pt"), max_new_tokens=5, do_sample=False)[0, -5:].tolist()
             for t in texts]
    info = {
        "transformers": transformers.__version__,
        "gf_train_importable": importlib.util.find_spec("gf_train") is not None,
        "beams_equal_uncached": bool(torch.equal(beams, hf.generate(prompt, use_cache=False, **kw))),
        "tokenizer_round_trip": tok.decode(tok(text).input_ids) == text,
        "tokenizer_ids": tok(text).input_ids,
        "padded_batch_equals_alone": batch[:, -5:].tolist() == alone and set(enc) == {"input_ids", "attention_mask"}
        and bool(enc.attention_mask[1, 0] == 0),
    }
    (out / "info.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
