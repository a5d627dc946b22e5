"""Preloaded by the data-preparation worker pool's forkserver: streaming and the tokenizers, imported once.

Importing this module does the work on purpose (it exists only to be named in
`multiprocessing.set_forkserver_preload`): workers forked from a clean server start fast and inherit
no threads or locks from the parent (forking the parent itself can deadlock after it used threads).
"""

from gf_train.data.compat import ensure_torchvision

ensure_torchvision()

import streaming  # noqa: E402, F401

import gf_train.data.pack  # noqa: E402, F401
