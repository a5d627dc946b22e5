"""Kernel tests: force NaN-poisoned outputs, so an element a kernel forgets to write fails the test."""

from __future__ import annotations

import os

os.environ["GF_POISON_OUTPUTS"] = "1"  # kernels fill the outputs they allocate with NaN first
