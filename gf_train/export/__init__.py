"""gf_train.export: everything after training. Export, import, generation, evaluation and plots.

Public API (each module imports torch / transformers lazily where it can):

* `export.export_checkpoint(run_or_step_dir, out, dtype)`: a checkpoint -> HF-loadable export folder.
* `convert.convert_reference(source, pth, out)`: GoldFinch-paper / RWKV-LM weights -> export folder.
* `hf_dir.write_export(inputs, out)`: the folder writer both use (atomic; safetensors only).
* `load.load_model(dir_or_checkpoint)`, `eval.evaluate(model, data)`, `plot.plot_metrics(run_dir)`,
  `gf_train.cli.generate.generate_text(model, tokenizer, prompt)`.

Their command lines (`gf-train export|convert|eval|generate|plot`) are `gf_train.cli`.
"""
