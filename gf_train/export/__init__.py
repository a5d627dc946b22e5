"""gf_train.export: a trained model out of gf-train and reference weights into it, in the Hugging Face format.

Public API (each module imports torch / transformers lazily where it can):

* `export.export_checkpoint(run_or_step_dir, out, dtype)`: a checkpoint -> HF-loadable export folder.
* `convert.convert_reference(source, pth, out)`: GoldFinch-paper / RWKV-LM weights -> export folder.
* `hf_dir.write_export(inputs, out)`: the folder writer both use (atomic; safetensors only).
* `load.load_model(dir_or_checkpoint)`: an export folder or a checkpoint -> model + tokenizer.
* `hf_remote/`: the modelling code shipped inside every export (`trust_remote_code=True`).

Evaluation is `gf_train.evaluate`, plots `gf_train.train.plot` (next to the metrics writer). The command
lines (`gf-train export|convert|eval|generate|plot`) are `gf_train.cli`.
"""
