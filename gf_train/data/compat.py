"""Environment glue for mosaicml-streaming: the torchvision stand-in and stale shm.

Owns two things that must happen before a `StreamingDataset` is built (the third, the rank variables
streaming reads, is written by `gf_train.distributed.info.ensure_dist_env`), and `local_dirs_in_use()`, the
local folders live datasets of ours have open (from streaming's shm registry; `gf-train data cache-clean`
keeps those):

* `ensure_torchvision()`: `import streaming` imports torchvision at import time (streaming.vision), and
  no torchvision wheel works next to CPU torch 2.13. When a real one can't be imported, a stand-in goes
  into `sys.modules` (only `VisionDataset` and a `to_tensor` that raises). Call it right before every
  `import streaming`.
* `clean_stale_shm()`: streaming's own `clean_stale_shared_memory()` unlinks *every* streaming segment
  on the node, including those of another live job, so it is unsafe when two jobs share a node. This
  version unlinks only segments of our uid that no process maps (checked in /proc/*/maps).
  It runs on local rank 0 and is followed by a barrier, so call it on every rank.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from pathlib import Path

# Segment names streaming creates in /dev/shm: "<6-digit prefix>_<name>" (see streaming.base.constant).
_STREAMING_SHM = re.compile(r"^\d{6}_(locals|barrier|next_epoch|cache_usage|shard_states|shard_access_times"
                            r"|resume|epoch_shape|epoch_data)$")


def ensure_torchvision() -> None:
    """Make `import streaming` work without torchvision (no-op when a real torchvision imports)."""
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is not None:
        try:
            import torchvision  # noqa: F401

            return
        except Exception:  # e.g. a CUDA torchvision next to CPU torch: 'operator torchvision::nms does not exist'
            for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
                del sys.modules[k]
    tv, ds = types.ModuleType("torchvision"), types.ModuleType("torchvision.datasets")
    tr, fn = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.transforms.functional")

    class VisionDataset:  # only subclassed by streaming.vision, never used by gf_train
        def __init__(self, root: object = None, transforms: object = None, transform: object = None,
                     target_transform: object = None) -> None:
            self.root, self.transforms = root, transforms
            self.transform, self.target_transform = transform, target_transform

    def _unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision stand-in (gf_train.data.compat): image transforms are unavailable")

    ds.VisionDataset, ds.CIFAR10, fn.to_tensor = VisionDataset, _unavailable, _unavailable  # type: ignore[attr-defined]
    tv.datasets, tv.transforms, tr.functional, tv.__version__ = ds, tr, fn, "0.0.0+gf_train_stub"  # type: ignore[attr-defined]
    for m in (tv, ds, tr, fn):  # transformers calls importlib.util.find_spec("torchvision")
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    sys.modules.update({"torchvision": tv, "torchvision.datasets": ds, "torchvision.transforms": tr,
                        "torchvision.transforms.functional": fn})


def _mapped_shm_names() -> set[str]:
    """Names of /dev/shm files mapped by the processes we can inspect.

    Streaming's segments are created with mode 0600, so only our uid (or root) can map them, and our own
    training processes are always inspectable; processes we cannot read (a container's init, other
    security contexts) are assumed not to be streaming jobs of ours.
    """
    names: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "maps").read_text()
        except OSError:  # gone, or not ours to read
            continue
        for line in text.splitlines():
            i = line.find("/dev/shm/")
            if i >= 0:
                names.add(line[i + len("/dev/shm/"):].split(" ")[0])
    return names


def local_dirs_in_use(shm_dir: str = "/dev/shm") -> set[str]:
    """Local folders of the StreamingDatasets that live processes of ours have open on this node.

    Read from streaming's registry: each dataset's `<prefix>_locals` segment holds an int32 byte count,
    then its local folders and its prefix, NUL-separated (`streaming.base.shared.prefix._pack_locals`).
    Segments no live process maps (crashed jobs) do not count.
    """
    root = Path(shm_dir)
    if not root.is_dir() or not Path("/proc/self/maps").exists():
        return set()
    segs = [p for p in root.iterdir() if p.name.endswith("_locals") and _STREAMING_SHM.match(p.name)]
    segs = [p for p in segs if p.stat().st_uid == os.getuid()]
    mapped = _mapped_shm_names() if segs else set()
    out: set[str] = set()
    for p in segs:
        if p.name not in mapped:
            continue
        try:
            data = p.read_bytes()
        except OSError:  # unlinked meanwhile
            continue
        size = int.from_bytes(data[:4], sys.byteorder, signed=True)
        out.update(d for d in data[4:size].decode("utf-8", "replace").split("\0")[:-1] if d)
    return out


def clean_stale_shm(shm_dir: str = "/dev/shm") -> list[str]:
    """Unlink streaming shm segments of ours that no live process maps. Returns the names removed.

    Safe with two jobs on one node: a live job maps its segments, so they are kept. Call on every rank
    (local rank 0 cleans, then all ranks meet at a barrier when torch.distributed is initialised).
    """
    removed: list[str] = []
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    root = Path(shm_dir)
    if local_rank == 0 and root.is_dir() and Path("/proc/self/maps").exists():
        candidates = [p for p in root.iterdir() if _STREAMING_SHM.match(p.name)]
        candidates = [p for p in candidates if p.stat().st_uid == os.getuid()]
        mapped = _mapped_shm_names() if candidates else set()
        for p in candidates:
            if p.name not in mapped:
                try:
                    p.unlink()
                    removed.append(p.name)
                except FileNotFoundError:
                    pass
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    except ImportError:
        pass
    return removed
