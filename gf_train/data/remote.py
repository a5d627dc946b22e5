"""Datasets on object storage (S3 and S3-compatible stores): URIs, checks, manifest reads, upload, local cache.

Owns everything gf-train itself does with a remote dataset URI (`s3://bucket/prefix[/train|/val]`); the
shards a training run reads are downloaded by mosaicml-streaming (`gf_train.data.loader`), which reads the
same settings: AWS credentials from the usual places (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws, instance roles) and `S3_ENDPOINT_URL` for an S3-compatible store (MinIO, Ceph, R2, GCS's
interoperability endpoint https://storage.googleapis.com with HMAC keys, ...). Only `boto3` is imported here.

* `check_bucket(uri, write=)`: one-line `RemoteError` (a ValueError) for missing credentials, a missing
  bucket or an unreachable endpoint, made before any work. Reads without credentials go unsigned (public
  buckets), as streaming does.
* `read_manifest_text(uri)`: the dataset's `manifest.json` (next to the split folders). A prefix without
  one is not a finished dataset: uploads write it last. `read_index(uri)`: a split's MDS index.
* `cache_dir(uri, manifest_text, root)`: where streaming mirrors a remote split locally. The folder is
  keyed by the manifest's hash, so a dataset re-uploaded under the same URI never meets stale shards.
* `tokenize_to_remote(...)` / `upload_dataset(local, uri)`: `data_prep/tokenize.py --out s3://...`. The
  dataset is built by `tokenize_corpus` in a local staging folder (holding a copy of the remote manifest,
  so its rerun check decides the no-op exactly as for a local folder), then uploaded in this order: old
  `manifest.json` deleted, the marker `.gf-train-upload` written, every file but the manifest uploaded,
  objects of an older dataset deleted, `manifest.json` uploaded, marker deleted. A prefix with the marker and no
  manifest is an unfinished upload that the next run replaces; a prefix holding anything else without a
  manifest is refused without `--overwrite`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

MANIFEST = "manifest.json"  # = manifest.MANIFEST_NAME (not imported: manifest.py imports this module lazily)
MARKER = ".gf-train-upload"
ENDPOINT_ENV = "S3_ENDPOINT_URL"  # mosaicml-streaming's name for a custom S3 endpoint
_SPLITS = ("train", "val")
_manifest_cache: dict[str, tuple[str, str]] = {}  # dataset URI -> (manifest text, manifest URI), per process


class RemoteError(ValueError):
    """A user-fixable problem with a remote dataset URI (credentials, bucket, endpoint, contents)."""


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` URIs other than file://."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("bucket", "a/b"). Raises RemoteError for other schemes."""
    u = urlparse(uri)
    if u.scheme != "s3":
        raise RemoteError(f"{uri}: only s3:// URIs are supported (other stores: use their S3-compatible "
                          f"endpoint through {ENDPOINT_ENV}, e.g. https://storage.googleapis.com for GCS)")
    if not u.netloc:
        raise RemoteError(f"{uri}: no bucket name; write s3://BUCKET/PREFIX")
    return u.netloc, u.path.strip("/")


def _endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV) or "the AWS S3 endpoint"


def _has_credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


def client(signed: bool = True) -> Any:
    """An S3 client for `S3_ENDPOINT_URL` (or AWS), with short timeouts so that checks fail fast."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                 **({} if signed else {"signature_version": UNSIGNED}))
    return boto3.session.Session().client("s3", endpoint_url=os.environ.get(ENDPOINT_ENV) or None, config=cfg)


def _explain(e: Exception, bucket: str, what: str, head: bool = False) -> RemoteError:
    """A one-line RemoteError for a botocore exception raised while doing `what` on `bucket` (`head`: a
    HeadBucket call, whose 404 means a missing bucket)."""
    from botocore.exceptions import ClientError, NoCredentialsError
    from botocore.exceptions import ConnectionError as EndpointUnreachable

    if isinstance(e, NoCredentialsError):
        return RemoteError(f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                           "(or AWS_PROFILE, ~/.aws/credentials)")
    if isinstance(e, EndpointUnreachable):
        return RemoteError(f"{what}: cannot reach {_endpoint()} ({type(e).__name__}); check {ENDPOINT_ENV} "
                           "and the network")
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (head and code == "404"):
            return RemoteError(f"{what}: bucket {bucket!r} does not exist at {_endpoint()}; create it or fix the URI")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return RemoteError(f"{what}: access denied ({code}) to bucket {bucket!r} at {_endpoint()}; check the "
                               "AWS credentials and the bucket's permissions")
        return RemoteError(f"{what}: S3 error {code} ({e}) at {_endpoint()}")
    return RemoteError(f"{what}: {type(e).__name__}: {e} at {_endpoint()}")


def check_bucket(uri: str, *, write: bool) -> Any:
    """Fail with one line unless `uri`'s bucket exists and is reachable (with credentials when `write`).

    Returns the client to use for `uri` (unsigned when reading without credentials).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = split_uri(uri)
    signed = _has_credentials()
    if write and not signed:
        raise RemoteError(f"{uri}: no AWS credentials found to upload with; set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials)")
    c = client(signed)
    c.unsigned = not signed  # read_manifest_text explains a denied unsigned read the same way
    try:
        c.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as e:
        err = _explain(e, bucket, uri, head=True)
        raise (_unsigned_denied(uri) if not signed and "access denied" in str(err) else err) from None
    return c


def _unsigned_denied(uri: str) -> RemoteError:
    return RemoteError(f"{uri}: no AWS credentials found and the bucket is not public; set AWS_ACCESS_KEY_ID "
                       "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials)")


def _list(c: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Keys under `prefix/` (relative to it) -> size."""
    out: dict[str, int] = {}
    base = f"{prefix}/" if prefix else ""
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(base):]] = int(obj["Size"])
    return out


def _get_text(c: Any, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return c.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
            return None
        raise


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def read_manifest_text(uri: str) -> tuple[str, str]:
    """(text, URI) of the manifest of the dataset at `uri` (its root or a split folder). Cached per process.

    Raises FileNotFoundError when there is none (not a dataset, or an unfinished upload) and RemoteError
    for credentials, bucket and endpoint problems.
    """
    uri = uri.rstrip("/")
    if uri in _manifest_cache:
        return _manifest_cache[uri]
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(uri)
    c = check_bucket(uri, write=False)
    cands = [_join(prefix, MANIFEST)]
    if prefix.endswith(MANIFEST):
        cands = [prefix]
    elif "/" in prefix:
        cands.append(_join(prefix.rsplit("/", 1)[0], MANIFEST))
    elif prefix:
        cands.append(MANIFEST)
    for key in cands:
        try:
            text = _get_text(c, bucket, key)
        except (ClientError, BotoCoreError) as e:
            err = _explain(e, bucket, f"reading s3://{bucket}/{key}")
            raise (_unsigned_denied(uri) if c.unsigned and "access denied" in str(err) else err) from None
        if text is not None:
            _manifest_cache[uri] = (text, f"s3://{bucket}/{key}")
            return _manifest_cache[uri]
    raise FileNotFoundError(f"no {MANIFEST} at {uri} or its parent: not the output of data_prep/tokenize.py "
                            "--out s3://..., or an upload that did not finish (rerun the same tokenize command)")


def read_index(uri: str) -> str:
    """The text of the MDS `index.json` of the remote split folder `uri` (shard sizes, for `data.cache_limit`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(uri.rstrip("/"))
    c = check_bucket(uri, write=False)
    key = _join(prefix, "index.json")
    try:
        text = _get_text(c, bucket, key)
    except (ClientError, BotoCoreError) as e:
        raise _explain(e, bucket, f"reading s3://{bucket}/{key}") from None
    if text is None:
        raise FileNotFoundError(f"no index.json at {uri}: not a split folder of a gf-train dataset "
                                "(data_prep/tokenize.py --out URI gives URI/train and URI/val)")
    return text


def cache_dir(uri: str, manifest_text: str, root: str | os.PathLike[str]) -> Path:
    """The local folder that mirrors the remote split `uri`: <root>/s3/<bucket>/<prefix>/<manifest hash>/<split>."""
    bucket, prefix = split_uri(uri.rstrip("/"))
    parts = prefix.split("/") if prefix else []
    split = parts.pop() if parts and parts[-1] in _SPLITS else "data"
    digest = hashlib.sha256(manifest_text.encode()).hexdigest()[:16]
    return Path(root).expanduser().resolve() / "s3" / bucket / Path(*parts or ["_"]) / digest / split


def upload_dataset(stage: str | os.PathLike[str], uri: str, *, c: Any = None, log: Callable[[str], Any] = print
                   ) -> None:
    """Upload the finished local dataset `stage` to `uri`, manifest last (see module docstring).

    Replaces what the prefix held (the caller decides whether it may). An exception on the way leaves the
    prefix without a manifest: unfinished, and replaced by the next run.
    """
    from boto3.s3.transfer import TransferConfig

    bucket, prefix = split_uri(uri)
    stage = Path(stage)
    c = c if c is not None else check_bucket(uri, write=True)
    files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if not p.is_dir())
    assert MANIFEST in files, "tokenize_corpus writes the manifest"
    c.delete_object(Bucket=bucket, Key=_join(prefix, MANIFEST))  # from here on the prefix is unfinished
    c.put_object(Bucket=bucket, Key=_join(prefix, MARKER),
                 Body=json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
    body = [f for f in files if f != MANIFEST]
    transfer = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:  # S3 latency, not bandwidth, bounds many small objects
        for fut in [pool.submit(c.upload_file, str(stage / f), bucket, _join(prefix, f), Config=transfer)
                    for f in body]:
            fut.result()
    nbytes = sum((stage / f).stat().st_size for f in files)
    stale = sorted(set(_list(c, bucket, prefix)) - set(files) - {MARKER})
    for i in range(0, len(stale), 1000):  # objects of an older dataset under the same prefix
        c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": _join(prefix, k)} for k in stale[i:i + 1000]]})
    c.upload_file(str(stage / MANIFEST), bucket, _join(prefix, MANIFEST))
    c.delete_object(Bucket=bucket, Key=_join(prefix, MARKER))
    root = f"s3://{bucket}/{prefix}"
    for key in [k for k in _manifest_cache if k == root or k.startswith(root + "/")]:
        del _manifest_cache[key]  # this process reads the new manifest from now on
    log(f"uploaded {len(files)} files ({nbytes / 1e6:.1f} MB) to s3://{bucket}/{prefix} in "
        f"{time.perf_counter() - t0:.1f} s, {MANIFEST} last")


def tokenize_to_remote(build: Callable[..., dict[str, Any]], inputs: list[str], uri: str, tokenizer: str,
                       seq_len: int, *,
                       stage_dir: str | os.PathLike[str] | None = None, overwrite: bool = False,
                       log: Callable[[str], Any] = print, **kwargs: Any) -> dict[str, Any]:
    """`tokenize_corpus` into s3://bucket/prefix (see module docstring). Returns the manifest (`status`).

    `stage_dir`: local folder for the build (default: the temporary folder); it needs room for the dataset
    and is emptied afterwards. `build` is `gf_train.data.tokenize.tokenize_corpus` (passed in: it imports this
    module's manifest reader); other keyword arguments go to it.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from gf_train.data.readers import DataPrepError

    try:
        bucket, prefix = split_uri(uri)
        if not prefix:
            raise RemoteError(f"--out {uri}: give a prefix inside the bucket, e.g. s3://{bucket}/datasets/NAME")
        uri = f"s3://{bucket}/{prefix}"
        c = check_bucket(uri, write=True)
        existing = _list(c, bucket, prefix)
        manifest = _get_text(c, bucket, _join(prefix, MANIFEST)) if MANIFEST in existing else None
    except RemoteError as e:
        raise DataPrepError(str(e)) from None
    except (ClientError, BotoCoreError) as e:
        raise DataPrepError(str(_explain(e, bucket, uri))) from None
    if manifest is None and existing and MARKER not in existing and not overwrite:
        raise DataPrepError(f"--out {uri} holds {len(existing)} objects and no {MANIFEST}: not a gf-train dataset; "
                            "pass --overwrite to replace them, or choose another prefix")
    if manifest is None and MARKER in existing:
        log(f"{uri} holds an unfinished upload of an earlier run: replacing it")
    root = Path(stage_dir or tempfile.gettempdir()).expanduser().resolve()
    stage = root / f"gf-train-upload-{hashlib.sha256(uri.encode()).hexdigest()[:12]}" / "dataset"
    shutil.rmtree(stage.parent, ignore_errors=True)  # a crashed earlier run's build: never reused blindly
    stage.mkdir(parents=True)
    try:
        if manifest is not None:
            (stage / MANIFEST).write_text(manifest, encoding="utf-8")  # tokenize_corpus's rerun check sees it
        try:
            m = build(inputs, stage, tokenizer, seq_len, overwrite=overwrite,
                                log=lambda s: log(s.replace(str(stage), uri)), **kwargs)
        except DataPrepError as e:
            raise DataPrepError(str(e).replace(str(stage), uri)) from None
        if m["status"] == "noop":
            if MARKER in existing:  # a run that died between its manifest and the marker's removal
                c.delete_object(Bucket=bucket, Key=_join(prefix, MARKER))
            return m
        try:
            upload_dataset(stage, uri, c=c, log=log)
        except (ClientError, BotoCoreError) as e:
            raise DataPrepError(f"{_explain(e, bucket, f'uploading to {uri}')}; the upload is unfinished (no "
                                f"{MANIFEST}): rerun the same command") from None
        return m
    finally:
        shutil.rmtree(stage.parent, ignore_errors=True)
