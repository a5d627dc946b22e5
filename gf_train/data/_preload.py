"""Preloaded by the data-preparation worker pool's forkserver: the pass modules and tokenizers, imported once,
and the run's tokenizer itself, loaded once.

Importing this module does the work on purpose (it exists only to be named in
`multiprocessing.set_forkserver_preload`): workers forked from a clean server start fast and inherit
no threads or locks from the parent (forking the parent itself can deadlock after it used threads:
rayon's pool in `encode_batch`). The server never encodes, so it starts no rayon threads either.
streaming is not imported: pass 2 writes MDS shards itself (`pack.write_shards`) and only its rare
MDSWriter fallback imports streaming, in the worker that needs it.

`GF_DATA_PRELOAD_TOKENIZER` (JSON `[spec, eos]`, set by `tokenize._start_forkserver` only while it
spawns the server) names the tokenizer to load here, so that every worker inherits it instead of loading
its own (~0.2 s for rwkv_world). Failures are ignored: a worker then loads it and reports the error.
"""

import json
import os

import numpy  # noqa: F401
import orjson  # noqa: F401
import pyrwkv_tokenizer  # noqa: F401
import tokenizers  # noqa: F401
import xxhash  # noqa: F401
import zstd  # noqa: F401

import gf_train.data.pack
import gf_train.data.tokenizers  # noqa: F401

if os.environ.get(gf_train.data.pack.PRELOAD_ENV):
    try:
        _spec, _eos = json.loads(os.environ[gf_train.data.pack.PRELOAD_ENV])
        gf_train.data.pack.worker_tokenizer(_spec, _eos)
    except Exception:  # noqa: BLE001 - the worker loads it again and reports the error
        pass
