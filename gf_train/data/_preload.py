"""Preloaded by the data-preparation worker pool's forkserver: the pass modules and tokenizers, imported once.

Importing this module does the work on purpose (it exists only to be named in
`multiprocessing.set_forkserver_preload`): workers forked from a clean server start fast and inherit
no threads or locks from the parent (forking the parent itself can deadlock after it used threads).
streaming is not imported: pass 2 writes MDS shards itself (`pack.write_shards`) and only its rare
MDSWriter fallback imports streaming, in the worker that needs it.
"""

import numpy  # noqa: F401
import orjson  # noqa: F401
import pyrwkv_tokenizer  # noqa: F401
import tokenizers  # noqa: F401
import xxhash  # noqa: F401
import zstd  # noqa: F401

import gf_train.data.pack  # noqa: F401
import gf_train.data.tokenizers  # noqa: F401
