"""Environment glue for mosaicml-streaming: the torchvision stand-in and stale shm.

Owns two things that must happen before a `StreamingDataset` is built (the third, the rank variables
streaming reads, is written by `gf_train.distributed.info.ensure_dist_env`), and `local_dirs_in_use()`, the
local folders live datasets of ours have open (from streaming's shm registry; `gf-train data cache-clean`
keeps those), and the two halves of a dataset's shared-memory life: `open_dataset(**kw)` builds one,
`release_shm(ds)` frees its segments when its reader is done:

* `ensure_torchvision()`: `import streaming` imports torchvision at import time (streaming.vision), and
  no torchvision wheel works next to CPU torch 2.13. When a real one can't be imported, a stand-in goes
  into `sys.modules` (only `VisionDataset` and a `to_tensor` that raises). Call it right before every
  `import streaming`.
* `clean_stale_shm()`: streaming's own `clean_stale_shared_memory()` unlinks *every* streaming segment
  on the node, including those of another live job, so it is unsafe when two jobs share a node. This
  version unlinks only segments of our uid that no process maps (checked in /proc/*/maps).
  It runs on local rank 0 and is followed by a barrier, so call it on every rank.
* `open_dataset(**kw)`: `StreamingDataset(**kw)`, registered under a node-wide lock (`registry_lock`:
  streaming's prefix registration races when two jobs start on one node at once), minus a leak: to pick
  its segment prefix, streaming attaches to the segments of every other live dataset on the node and never
  detaches (each stays registered with atexit; mosaicml/streaming#457, llm-foundry#406), ~6 descriptors per
  live dataset per dataset built, so an eval loop next to a training job ran out of them. Those attachments
  are closed.
* `release_shm(ds)`: streaming closes a dataset's segments only at interpreter exit (atexit), so each
  dataset a long-lived process opens (eval, inspect, a notebook, the test suite) holds ~6 descriptors
  and its local folder's registration until then; at the default `ulimit -n` of 1024 a few hundred
  datasets exhaust the process. This closes them now.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _owned(p: Path) -> bool:
    """Whether this user owns `p` (False once another job has unlinked it)."""
    try:
        return p.stat().st_uid == os.getuid()
    except FileNotFoundError:
        return False


def clean_stale_shm(shm_dir: str = "/dev/shm") -> list[str]:
    """Unlink streaming shm segments of ours that no live process maps. Returns the names removed.

    Safe with two jobs on one node: a live job maps its segments, so they are kept. Call on every rank
    (local rank 0 cleans, then all ranks meet at a barrier when torch.distributed is initialised).
    """
    removed: list[str] = []
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    root = Path(shm_dir)
    if local_rank == 0 and root.is_dir() and Path("/proc/self/maps").exists():
        with registry_lock(shm_dir):  # not while another job registers a dataset (creates its segments)
            candidates = [p for p in root.iterdir() if _STREAMING_SHM.match(p.name) and _owned(p)]
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


def release_shm(ds: Any) -> None:
    """Close (and unlink, where this process created them) the shared-memory segments of StreamingDataset
    `ds` now, and free its local folders for another dataset; `ds` is unusable afterwards. Idempotent."""
    from streaming.base.shared import SharedMemory

    found: list[Any] = []

    def visit(obj: Any, depth: int) -> None:  # the dataset's own SharedArray/SharedScalar/SharedBarrier/...
        if isinstance(obj, SharedMemory):
            found.append(obj)
        elif depth and type(obj).__module__.startswith("streaming.") and hasattr(obj, "__dict__"):
            for v in list(vars(obj).values()):
                visit(v, depth - 1)

    visit(ds, 3)
    locals_shm = getattr(ds, "_locals_shm", None)
    if locals_shm is not None and locals_shm.shm.buf is not None:
        locals_shm.buf[:4] = bytes(4)  # what StreamingDataset.__del__ does: the registry entry is now empty
    for shm in found:
        atexit.unregister(shm.cleanup)
        if all(s.buf is None for s in shm.created_shms + shm.opened_shms):
            continue  # closed already
        shm.cleanup()
    for name in [k for k, v in vars(ds).items() if isinstance(v, SharedMemory)]:
        delattr(ds, name)  # __del__ must not touch a closed segment


REGISTRY_LOCK = "gf_train_streaming_registry.lock"  # in /dev/shm, next to the registry it guards
REGISTRY_LOCK_TIMEOUT_S = 300.0


def open_dataset(**kwargs: Any) -> Any:
    """`streaming.StreamingDataset(**kwargs)`, registered under the node's registry lock, with the segments
    of other datasets that its prefix scan attached to closed again (see the module docstring)."""
    ensure_torchvision()
    import torch.distributed as dist
    from streaming import StreamingDataset
    from streaming.base.world import World

    together = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    world = World.detect()
    with (registry_lock() if world.is_local_leader else contextlib.nullcontext(), _scan_attachments() as attached,
          _leaders_prefix(world.node, world.is_local_leader) if together else contextlib.nullcontext()):
        ds = StreamingDataset(**kwargs)  # scan, barrier, the leader registers, barrier, the others attach
    keep = getattr(ds, "_locals_shm", None)  # a non-leader rank attaches to its own registry entry: kept
    _detach([shm for shm in attached if shm is not keep])
    return ds


@contextlib.contextmanager
def registry_lock(shm_dir: str = "/dev/shm", timeout_s: float | None = None) -> Iterator[None]:
    """Hold the node's lock on streaming's shm registry (one flock'ed file in `shm_dir`).

    Streaming picks a dataset's segment prefix by scanning /dev/shm for the first free number, then creates
    `<prefix>_locals` after a barrier. Two jobs that start on one node at once (a sweep, eval next to
    training, two test workers) can pick the same number: the second then shares the first one's barrier
    and shard states and hangs, or its ranks disagree on the prefix and fail (mosaicml/streaming#884, #901,
    #689: FileExistsError on '/00000N_locals', hangs under pytest-xdist). Under this lock one job at a
    time scans and registers (its local leader holds it from before the scan until its entry exists).
    The kernel drops the lock when its holder dies. Hand-written rather than `filelock.FileLock`: the
    file is shared by every user of the node, and a flock on a read-only descriptor of another user's file
    (umask leaves it 0644) still locks, where filelock's native lock needs write access."""
    import fcntl
    import time

    timeout_s = REGISTRY_LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    path = os.path.join(shm_dir, REGISTRY_LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: a read-only descriptor locks as well
        fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another process on this node has held {path} for over {timeout_s:.0f} s while building a "
                        "streaming dataset (a job stuck at start-up?); find it with `fuser -v " + path + "`, "
                        "stop it, then start again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def _leaders_prefix(node: int, leader: bool) -> Iterator[None]:
    """While inside, every rank takes the prefix that its node's local leader finds (under the registry lock),
    instead of scanning the registry itself: a dataset released by another job between the leader's scan
    and another rank's would make them disagree ("Internal error: shared memory prefix=... was not
    registered by local leader"). One all-gather per scan, on every rank alike (streaming scans once per
    segment kind on each rank)."""
    import torch.distributed as dist
    from streaming.base.shared import prefix

    scan = prefix._check_and_find_retrying

    def agreed(streams_local: list[str], streams_remote: list[str | None], shm_name: str, retry: int) -> int:
        mine = scan(streams_local, streams_remote, shm_name, retry) if leader else None
        found: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(found, (node, mine))
        return next(p for n, p in found if n == node and p is not None)

    prefix._check_and_find_retrying = agreed
    try:
        yield
    finally:
        prefix._check_and_find_retrying = scan


@contextlib.contextmanager
def _scan_attachments() -> Iterator[list[Any]]:
    """Record the segments streaming's prefix module attaches to (create=False) while inside."""
    from streaming.base.shared import prefix

    attached: list[Any] = []
    base = prefix.SharedMemory

    class _Recorded(base):  # type: ignore[misc,valid-type]
        def __init__(self, name: str | None = None, create: bool | None = None, size: int = 0,
                     auto_cleanup: bool = True) -> None:
            super().__init__(name, create, size, auto_cleanup)
            if create is False:
                attached.append(self)

    prefix.SharedMemory = _Recorded
    try:
        yield attached
    except BaseException:
        _detach(attached)
        raise
    finally:
        prefix.SharedMemory = base


def _detach(shms: list[Any]) -> None:
    for shm in shms:
        atexit.unregister(shm.cleanup)
        shm.cleanup()  # attached, not created: closes, never unlinks
