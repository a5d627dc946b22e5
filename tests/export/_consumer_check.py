"""Run in a bare consumer environment (torch + the *other* transformers major, no gf-train): load an
export folder with `trust_remote_code`, and write what it computes for `test_hf_other_transformers.py`.

    python _consumer_check.py EXPORT_DIR OUT_DIR

Writes OUT_DIR/logits.npy ([2, 24, vocab] for fixed ids), greedy.npy (6 new tokens with our cache) and
info.json (transformers version, whether gf_train is importable, beam search with vs without cache equal,
the tokenizer round trip).
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
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    hf = AutoModelForCausalLM.from_pretrained(src, trust_remote_code=True, local_files_only=True).eval()
    ids = torch.randint(1, 65530, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.save(out / "logits.npy", hf(ids).logits.float().numpy())
    prompt = ids[:1, :9]
    greedy = hf.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    np.save(out / "greedy.npy", greedy.numpy())
    kw = {"max_new_tokens": 4, "num_beams": 3, "num_return_sequences": 3, "do_sample": False,
          "eos_token_id": None, "pad_token_id": 0}
    beams = hf.generate(prompt, use_cache=True, **kw)
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=True, local_files_only=True)
    text = "GoldFinch: RWKV-6 meets GOLD attention. Ünïcode ✓ 中文\n\tend"
    info = {
        "transformers": transformers.__version__,
        "gf_train_importable": importlib.util.find_spec("gf_train") is not None,
        "beams_equal_uncached": bool(torch.equal(beams, hf.generate(prompt, use_cache=False, **kw))),
        "tokenizer_round_trip": tok.decode(tok(text).input_ids) == text,
        "tokenizer_ids": tok(text).input_ids,
    }
    (out / "info.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
