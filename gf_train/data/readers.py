"""Input discovery and record reading for data preparation: jsonl(.gz/.zst), txt, parquet, HF save_to_disk.

Owns `discover_inputs` (files, folders, globs -> sorted `InputFile`s), `plan_units` (split inputs into
independent work units, the same for any worker count) and `iter_texts` (the documents of one unit).

Documents: one per non-blank jsonl line (field `text_field`), one per .txt file, one per parquet/arrow
row. Empty texts are counted (`empty_docs`) and skipped. Units: plain .jsonl files are cut into byte
ranges of `chunk_bytes` aligned to line starts; .gz/.zst/.txt/.arrow files are one unit each; parquet
files one unit per row group. Errors are `DataPrepError`s naming the file and line (or row) and the fix;
record-level ones (bad JSON, missing/non-string field, invalid Unicode, null value) become counted skips
with `skip_bad=True`.

Text policy for invalid Unicode (undecodable UTF-8 bytes, and lone surrogate escapes like `"\\ud800"`
that JSON allows but no tokenizer can encode): an error by default, a counted skip with `skip_bad`, or,
with `replace_invalid=True`, each bad byte sequence / lone surrogate becomes U+FFFD (counted through
`on_replace`). Every text `iter_texts` yields is valid Unicode (encodes to UTF-8 strictly).
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".jsonl.gz", ".jsonl.zst", ".jsonl", ".txt", ".parquet")
_FIX = "fix the record or pass --skip-bad-records to skip it"
_FIX_UNICODE = ("fix the record, pass --skip-bad-records to skip it, or --replace-invalid-unicode to replace the bad "
                "characters by U+FFFD")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what json.loads leaves of an unpaired \\uD800-\\uDFFF escape


class InvalidUnicode(ValueError):
    """A record whose text is not valid Unicode (undecodable UTF-8, lone surrogate)."""


class DataPrepError(ValueError):
    """A user-facing data preparation error (bad input, bad flag); the CLI exits 2 with its message."""


@dataclass(frozen=True)
class InputFile:
    path: str
    kind: str  # one of SUFFIXES without the dot, or "arrow" (a file of a datasets.save_to_disk folder)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Unit:
    path: str
    kind: str
    start: int = 0  # jsonl: byte offset; parquet: row group index
    end: int = -1  # jsonl: byte end (exclusive); -1 = whole file
    nbytes: int = 0  # input bytes this unit covers (for MB/s)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    for suf in SUFFIXES:
        if name.endswith(suf):
            return suf[1:]
    return None


def _hf_dataset_files(folder: Path) -> list[Path] | None:
    """Arrow files of a `datasets.save_to_disk` folder (Dataset or DatasetDict), or None if it is not one."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        files: list[Path] = []
        for s in splits:
            files += _hf_dataset_files(folder / s) or []
        return files
    state = folder / "state.json"
    if state.is_file() and (folder / "dataset_info.json").is_file():
        return [folder / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    return None


def _input_file(p: Path, kind: str) -> InputFile:
    st = p.stat()
    if st.st_size == 0:
        raise DataPrepError(f"input {p} is empty; remove it from --input")
    return InputFile(str(p.resolve()), kind, st.st_size, st.st_mtime_ns)


def discover_inputs(inputs: list[str]) -> list[InputFile]:
    """Expand files, folders (recursive, sorted) and globs. Errors for missing, empty or unsupported inputs."""
    if not inputs:
        raise DataPrepError("no --input given")
    found: list[InputFile] = []
    for spec in inputs:
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True)) if glob.has_magic(spec) else [spec]
        if not matches:
            raise DataPrepError(f"--input {spec!r} matches no files")
        for m in matches:
            p = Path(m).expanduser()
            if not p.exists():
                raise DataPrepError(f"--input {p} does not exist")
            if p.is_dir():
                hf = _hf_dataset_files(p)
                if hf is not None:
                    found += [_input_file(f, "arrow") for f in hf]
                    continue
                files = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) is not None)
                if not files:
                    raise DataPrepError(f"--input folder {p} holds no {', '.join(SUFFIXES)} files "
                                        "and is not a datasets.save_to_disk folder")
                found += [_input_file(f, _kind(f) or "") for f in files]
            else:
                kind = _kind(p)
                if kind is None:
                    raise DataPrepError(f"--input {p}: unsupported file type; expected one of {', '.join(SUFFIXES)} "
                                        "or a datasets.save_to_disk folder")
                found.append(_input_file(p, kind))
    seen: set[str] = set()
    return [f for f in found if not (f.path in seen or seen.add(f.path))]


def plan_units(files: list[InputFile], chunk_bytes: int = 2 << 20) -> list[Unit]:
    """Split inputs into work units; depends only on the inputs, never on the worker count."""
    units: list[Unit] = []
    for f in files:
        if f.kind == "jsonl" and f.size > chunk_bytes:
            bounds = [0]
            with open(f.path, "rb") as fh:
                while bounds[-1] + chunk_bytes < f.size:
                    fh.seek(bounds[-1] + chunk_bytes)
                    fh.readline()  # to the start of the next line
                    if fh.tell() >= f.size:
                        break
                    bounds.append(fh.tell())
            bounds.append(f.size)
            units += [Unit(f.path, f.kind, a, b, b - a) for a, b in zip(bounds, bounds[1:])]
        elif f.kind == "parquet":
            pf = _open_parquet(f.path)
            n = pf.metadata.num_row_groups
            units += [Unit(f.path, f.kind, i, i + 1, f.size // max(n, 1)) for i in range(n)]
        else:
            units.append(Unit(f.path, f.kind, 0, -1, f.size))
    return units


def _open_parquet(path: str):  # -> pyarrow.parquet.ParquetFile
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:
        raise DataPrepError(f"cannot read parquet file {path}: {e}; check the file is complete and not corrupt") from e


def _line_of(path: str, offset: int) -> int:
    """1-based line number of byte `offset` in a plain file (only computed on the error path)."""
    n, pos = 1, 0
    with open(path, "rb") as fh:
        while pos < offset:
            block = fh.read(min(1 << 24, offset - pos))
            if not block:
                break
            n += block.count(b"\n")
            pos += len(block)
    return n


try:  # orjson parses ~2-3x faster than json; any line it rejects (or whose field is not a string) is
    # re-parsed with json below, so results and error messages are json's exactly.
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency
    _fast_loads = None


def _text_of(line: bytes, field: str, replace: bool = False, replaced: list[str] | None = None) -> str:
    """The text field of one JSON line; raises ValueError (InvalidUnicode for invalid Unicode) with a short
    reason. With `replace`, invalid Unicode becomes U+FFFD and one entry is appended to `replaced` (a list,
    not a second return value: this runs once per document and the common case must stay as cheap as a
    plain return)."""
    if _fast_loads is not None:
        try:
            rec = _fast_loads(line)
        except ValueError:  # orjson.JSONDecodeError: stricter than json (NaN, lone surrogates, BOM, ...)
            pass
        else:
            if type(rec) is dict:
                text = rec.get(field)
                if type(text) is str:  # orjson accepts only valid UTF-8 and no lone surrogates
                    return text
    return _text_of_json(line, field, replace, replaced)


def valid_text(text: str, replace: bool) -> tuple[str, bool]:
    """`text` unchanged if it is valid Unicode; else with every lone surrogate replaced by U+FFFD (`replace`),
    or InvalidUnicode naming the first one."""
    m = _LONE_SURROGATE.search(text)
    if m is None:
        return text, False
    if replace:
        return _LONE_SURROGATE.sub("\ufffd", text), True
    raise InvalidUnicode(f"invalid Unicode (lone surrogate U+{ord(m.group()):04X} at character {m.start()})")


def _text_of_json(line: bytes, field: str, replace: bool = False, replaced: list[str] | None = None) -> str:
    bad_utf8 = False
    try:
        rec = json.loads(line)
    except UnicodeDecodeError as e:
        if not replace:
            raise InvalidUnicode(f"invalid UTF-8 ({e.reason} at byte {e.start})") from None
        rec, bad_utf8 = None, True
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if bad_utf8:
        try:
            rec = json.loads(line.decode("utf-8", "replace"))
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    if field not in rec:
        raise ValueError(f"missing text field {field!r} (fields: {', '.join(sorted(rec)[:10])}); "
                         "set --text-field") from None
    text = rec[field]
    if not isinstance(text, str):
        raise ValueError(f"field {field!r} is {type(text).__name__}, expected a string")
    text, fixed = valid_text(text, replace)
    if (bad_utf8 or fixed) and replaced is not None:
        replaced.append("invalid Unicode")
    return text


def _jsonl_lines(unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(line number or -offset, bytes) for each line; plain files yield -(byte offset) to locate lazily."""
    if unit.kind == "jsonl":
        with open(unit.path, "rb") as fh:
            fh.seek(unit.start)
            data = fh.read((unit.end if unit.end >= 0 else os.path.getsize(unit.path)) - unit.start)
        pos = unit.start
        for line in data.split(b"\n"):
            yield -pos - 1, line
            pos += len(line) + 1
        return
    raw = open(unit.path, "rb")
    try:
        if unit.kind == "jsonl.gz":
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw)
        else:
            import zstandard

            stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))  # type: ignore[arg-type]
        try:
            for i, line in enumerate(stream, 1):
                yield i, line
        except Exception as e:  # gzip: OSError/EOFError; zstandard: ZstdError
            raise DataPrepError(f"cannot decompress {unit.path}: {e}; the file is truncated or corrupt") from e
    finally:
        raw.close()


def iter_texts(unit: Unit, field: str, skip_bad: bool, on_skip: Callable[[str], None], replace_invalid: bool = False,
               on_replace: Callable[[str], None] | None = None) -> Iterator[str]:
    """The documents of `unit` in order. Bad records raise DataPrepError or, with skip_bad, call on_skip(msg);
    with replace_invalid, invalid Unicode becomes U+FFFD and on_replace(where) is called (see module docstring)."""

    def bad(where: str, why: str, fix: str = _FIX) -> None:
        msg = f"{unit.path}:{where}: {why}"
        if not skip_bad:
            raise DataPrepError(f"{msg}; {fix}")
        on_skip(msg)

    def replaced(where: str) -> None:
        if on_replace is not None:
            on_replace(f"{unit.path}:{where}")

    if unit.kind.startswith("jsonl"):
        fixed: list[str] = []  # _text_of appends when it replaced invalid Unicode
        for key, line in _jsonl_lines(unit):
            if not line.strip():
                continue
            try:
                text = _text_of(line, field, replace_invalid, fixed)
            except ValueError as e:
                if isinstance(e, DataPrepError):
                    raise
                bad(f"{key if key > 0 else _line_of(unit.path, -key - 1)}", str(e),
                    _FIX_UNICODE if isinstance(e, InvalidUnicode) else _FIX)
                continue
            if fixed:
                fixed.clear()
                replaced(f"{key if key > 0 else _line_of(unit.path, -key - 1)}")
            yield text
    elif unit.kind == "txt":
        data = Path(unit.path).read_bytes()
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            if replace_invalid:
                replaced(f"{line}")
                yield data.decode("utf-8", "replace")
            else:
                bad(f"{line}", f"invalid UTF-8 ({e.reason} at byte {e.start})", _FIX_UNICODE)
    elif unit.kind == "parquet":
        pf = _open_parquet(unit.path)
        names = pf.schema_arrow.names
        if field not in names:
            raise DataPrepError(f"parquet file {unit.path} has no column {field!r} (columns: {', '.join(names)}); "
                                "set --text-field")
        first = sum(pf.metadata.row_group(i).num_rows for i in range(unit.start))
        try:
            col = pf.read_row_group(unit.start, columns=[field]).column(0).to_pylist()
        except Exception as e:
            raise DataPrepError(f"cannot read parquet file {unit.path} (row group {unit.start}): {e}") from e
        for i, text in enumerate(col):
            if isinstance(text, str):
                yield text
            else:
                bad(f"row {first + i + 1}", f"column {field!r} is {type(text).__name__}, expected a string")
    elif unit.kind == "arrow":
        yield from _arrow_texts(unit, field, bad)
    else:  # pragma: no cover - discover_inputs only yields the kinds above
        raise AssertionError(unit.kind)


def _arrow_texts(unit: Unit, field: str, bad: Callable[[str, str], None]) -> Iterator[str]:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(unit.path)
    except Exception as e:
        raise DataPrepError(f"cannot read arrow file {unit.path}: {e}; re-save the dataset with save_to_disk") from e
    if field not in reader.schema.names:
        raise DataPrepError(f"dataset file {unit.path} has no column {field!r} (columns: "
                            f"{', '.join(reader.schema.names)}); set --text-field")
    row = 0
    for batch in reader:
        for text in batch.column(field).to_pylist():
            row += 1
            if isinstance(text, str):
                yield text
            else:
                bad(f"row {row}", f"column {field!r} is {type(text).__name__}, expected a string")
