"""A store of decoded clips or backbone features (any per-sample arrays): WebDataset tar shards plus an index.

Layout of a store folder::

    index.json                 format, kind ("clips" or "features"), the settings that made it, shard list, counts
    shard-000000.tar           WebDataset shard: <key>.<name>.npy per array and <key>.json (metadata) per sample
    shard-000000.idx.json      {key: {member suffix: [byte offset, byte size]}} for that shard
    failures.jsonl             {"key", "path", "reason"} per clip that `avlearn extract` could not store

The shards are plain tars in WebDataset's naming (``key.ext``, all members of a sample adjacent), so the same store
streams to many nodes with ``webdataset.WebDataset(store.shard_paths())``. ``ClipStore`` reads single samples
through the byte offsets in the ``.idx.json`` files (``os.pread``, so forked DataLoader workers can share it).
A clip store holds ``frames`` and ``wave`` per sample (and ``log_mel``, made by ``avlearn extract --log-mel``); a
feature store (``avlearn.data.features``) ``visual`` and/or ``audio`` arrays. ``ClipStore.read(key, names)`` reads
only the named arrays, each straight into a buffer of its own.

Atomicity: a shard is written as ``.shard-NNNNNN.tar.tmp`` and renamed when complete, then its index, then
``index.json``; a crash leaves at most a ``.tmp`` file, which the next writer deletes. A missing ``.idx.json`` is
rebuilt from its tar. A store records the settings that made it; appending with other settings is refused (a store
that holds no shard yet is reused with the new settings), and a reader that names the kind and settings it expects
(``ClipStore(root, kind=..., settings=...)``) refuses a store made otherwise.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avlearn.errors import ConfigError, DataError

if TYPE_CHECKING:
    from avlearn.io import Clip

FORMAT = "avlearn-store"
VERSION = 1
INDEX = "index.json"
FAILURES = "failures.jsonl"
_BLOCK = tarfile.BLOCKSIZE  # 512: tar members are padded to this


def _shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def _index_path(shard: Path) -> Path:
    return shard.with_suffix(".idx.json")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_key(key: str) -> str:
    """Return ``key`` if WebDataset can group by it (no dot, no leading or trailing slash, not empty)."""
    if not key or "." in key or key.startswith("/") or key.endswith("/") or "\\" in key:
        raise ValueError(f"store key {key!r} must be non-empty, without dots, backslashes or outer slashes")
    return key


def _scan_tar(shard: Path) -> dict[str, dict[str, list[int]]]:
    """Rebuild a shard's index from the tar headers."""
    samples: dict[str, dict[str, list[int]]] = {}
    with tarfile.open(shard, "r") as tar:
        for member in tar:
            key, _, suffix = member.name.partition(".")
            samples.setdefault(key, {})[suffix] = [member.offset_data, member.size]
    return samples


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings -> {"a.b": value}, so that differences are reported field by field."""
    flat: dict[str, Any] = {}
    for name, value in settings.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def settings_diff(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], only_wanted: bool = False
) -> dict[str, tuple[Any, Any]]:
    """{dotted field: (stored value, wanted value)} for every field where the two settings differ.

    Both are compared as JSON would store them (tuples are lists). With ``only_wanted``, fields that ``wanted`` does
    not name are not compared (a reader may check only the settings it cares about).
    """
    theirs, ours = _flatten(_as_json(stored)), _flatten(_as_json(wanted))
    names = sorted(ours if only_wanted else set(theirs) | set(ours))
    return {k: (theirs.get(k), ours.get(k)) for k in names if theirs.get(k) != ours.get(k)}


def _as_json(value: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(value)))


def write_failures(root: str | Path, rows: list[dict[str, str]]) -> Path:
    """Replace the store's failure manifest with ``rows`` (``{"key", "path", "reason"}`` each); return its path."""
    path = Path(root) / FAILURES
    _write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_failures(root: str | Path) -> list[dict[str, str]]:
    """The failure manifest's rows (empty if there is none)."""
    path = Path(root) / FAILURES
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ShardWriter:
    """Appends samples to the shards of a store folder, creating it or continuing it (``done`` lists what it holds).

    Args:
        root: the store folder.
        kind: what the samples are (``"clips"`` or ``"features"``).
        settings: the parameters that made the samples; a store continued with other settings is refused.
        shard_size: samples per shard.
    """

    def __init__(self, root: str | Path, kind: str, settings: Mapping[str, Any], shard_size: int = 256) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.kind, self.settings, self.shard_size = kind, _as_json(settings), shard_size
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        for stale in self.root.glob(".*.tmp"):
            stale.unlink()  # a shard or index a crashed writer did not finish
        self.shards: dict[str, dict[str, dict[str, list[int]]]] = {}
        for shard in sorted(self.root.glob("shard-*.tar")):
            self.shards[shard.name] = self._load_or_rebuild(shard)
        self.done: set[str] = {key for samples in self.shards.values() for key in samples}
        self._tar: tarfile.TarFile | None = None
        self._open: dict[str, dict[str, list[int]]] = {}
        self._write_index()

    def _check_settings(self) -> None:
        path = self.root / INDEX
        if not path.is_file():
            if any(self.root.iterdir()):
                raise ConfigError(f"{self.root} is not empty and holds no store ({INDEX}); choose a new folder")
            return
        index = json.loads(path.read_text())
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ConfigError(f"{path}: not an {FORMAT} v{VERSION} index; choose another folder")
        diff = settings_diff(
            {"kind": index.get("kind"), **index.get("settings", {})}, {"kind": self.kind, **self.settings}
        )
        if diff and not index.get("shards"):
            return  # a store that holds no clip yet (e.g. every clip failed): reused with the new settings
        if diff:
            raise ConfigError(
                f"{self.root} holds a store made with other settings (store vs this run: {diff}); "
                "use the same settings to continue it, or another folder"
            )

    @staticmethod
    def _load_or_rebuild(shard: Path) -> dict[str, dict[str, list[int]]]:
        path = _index_path(shard)
        if path.is_file():
            return json.loads(path.read_text())
        samples = _scan_tar(shard)
        _write_atomic(path, json.dumps(samples))
        return samples

    def write(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Add one sample: each array as ``<key>.<name>.npy`` and ``meta`` as ``<key>.json``."""
        check_key(key)
        if key in self.done or key in self._open:
            raise ValueError(f"key {key!r} is already in the store {self.root}")
        if self._tar is None:
            self._start_shard()
        members = {f"{name}.npy": _npy_bytes(array) for name, array in arrays.items()}
        members["json"] = json.dumps(dict(meta)).encode()
        self._open[key] = {suffix: self._add(f"{key}.{suffix}", data) for suffix, data in members.items()}
        if len(self._open) >= self.shard_size:
            self.finish_shard()

    def _start_shard(self) -> None:
        number = len(self.shards)
        while _shard_name(number) in self.shards:
            number += 1
        self._name = _shard_name(number)
        self._tmp = self.root / f".{self._name}.tmp"
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)

    def _add(self, name: str, data: bytes) -> list[int]:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        self._tar.addfile(info, io.BytesIO(data))
        padded = -(-len(data) // _BLOCK) * _BLOCK
        return [self._tar.offset - padded, len(data)]  # the data sits just before the padded end

    def finish_shard(self) -> None:
        """Close the open shard (if any), rename it into place, and write its index and ``index.json``."""
        if self._tar is None:
            return
        self._tar.close()
        with open(self._tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.root / self._name)
        _write_atomic(_index_path(self.root / self._name), json.dumps(self._open))
        self.shards[self._name] = self._open
        self.done.update(self._open)
        self._tar, self._open = None, {}
        self._write_index()

    def abort(self) -> None:
        """Drop the open shard (its samples are redone by the next run)."""
        if self._tar is not None:
            self._tar.close()
            self._tmp.unlink(missing_ok=True)
        self._tar, self._open = None, {}

    def _write_index(self) -> None:
        shards = [{"name": name, "count": len(samples)} for name, samples in sorted(self.shards.items())]
        index = {"format": FORMAT, "version": VERSION, "kind": self.kind, "settings": self.settings}
        index.update(count=sum(s["count"] for s in shards), shards=shards)
        _write_atomic(self.root / INDEX, json.dumps(index, indent=1))

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        if exc_type is None:
            self.finish_shard()
        else:
            self.abort()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_array(data: bytes | np.ndarray) -> np.ndarray:
    """Parse .npy bytes without copying the payload: a view of ``data`` (writable when ``data`` is a uint8 array)."""
    major = data[6]  # format version: the header length is 2 bytes long in v1, 4 in v2 and v3
    start = 10 if major == 1 else 12
    end = start + int.from_bytes(bytes(data[8:start]), "little")
    shape, fortran, dtype = _npy_header(bytes(data[:end]))
    count = int(np.prod(shape))
    if isinstance(data, np.ndarray):
        array = data[end : end + count * dtype.itemsize].view(dtype)
    else:
        array = np.frombuffer(data, dtype=dtype, offset=end, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


@functools.lru_cache(maxsize=256)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of a .npy header; cached, as parsing it (``ast``) costs more than the read."""
    stream = io.BytesIO(head)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(stream)


class ClipStore:
    """Random-access reader of a store folder: ``store[key]`` gives ``{name: array, ..., "meta": dict}``.

    ``store.clip(key)`` gives an ``avlearn.io.Clip`` (clip stores). A key that is not in the store raises
    ``DataError`` (with the extraction failure's reason when ``failures.jsonl`` has one); no other sample is ever
    returned in its place.

    Args:
        root: the store folder.
        kind: if given, the store must be of this kind (``"clips"`` or ``"features"``).
        settings: if given, every field named here must equal the store's (nested dicts are compared field by
            field; fields not named are not checked). ``FeatureExtractor(spec).settings()`` gives the full settings
            of a feature store, weights fingerprint included.

    Raises:
        DataError: not a store, or a store of another kind or made with other settings.
    """

    def __init__(self, root: str | Path, kind: str | None = None, settings: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        path = self.root / INDEX
        if not path.is_file():
            raise DataError(f"{self.root}: not a store (no {INDEX}); make one with `avlearn extract`")
        self.index = json.loads(path.read_text())
        if self.index.get("format") != FORMAT or self.index.get("version") != VERSION:
            raise DataError(
                f"{path}: format {self.index.get('format')} v{self.index.get('version')} is not {FORMAT} v{VERSION}"
            )
        self._where: dict[str, tuple[str, dict[str, list[int]]]] = {}
        for shard in self.index["shards"]:
            for key, members in json.loads(_index_path(self.root / shard["name"]).read_text()).items():
                self._where[key] = (shard["name"], members)
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()
        self.require(kind, settings or {})

    @property
    def kind(self) -> str:
        """What the samples are: ``"clips"`` or ``"features"``."""
        return self.index["kind"]

    @property
    def settings(self) -> dict[str, Any]:
        """The settings the store was made with (fps, size, sample rate, backbones, ...)."""
        return self.index["settings"]

    def require(self, kind: str | None, settings: Mapping[str, Any]) -> None:
        """Raise ``DataError`` unless the store is of ``kind`` (if given) and agrees with each field of ``settings``."""
        if kind is not None and kind != self.kind:
            raise DataError(f"{self.root}: a store of {self.kind}, not of {kind}")
        diff = settings_diff(self.settings, settings, only_wanted=True) if settings else {}
        if diff:
            raise DataError(
                f"{self.root}: made with other settings than this reader expects (store vs expected: {diff}); "
                "extract a store with these settings, or change the reader's"
            )

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def keys(self) -> list[str]:
        """All keys, shard by shard in writing order."""
        return list(self._where)

    def shard_paths(self) -> list[Path]:
        """The shard files, e.g. for ``webdataset.WebDataset([str(p) for p in store.shard_paths()])``."""
        return [self.root / shard["name"] for shard in self.index["shards"]]

    def failures(self) -> list[dict[str, str]]:
        """The failure manifest's rows ``{"key", "path", "reason"}`` (empty if there is none)."""
        return read_failures(self.root)

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.read(key)

    def read(self, key: str, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Sample ``key``'s arrays called ``names`` (default: all), each in its own writable buffer, and ``"meta"``.

        Raises:
            DataError: no sample ``key``, or it has no array called one of ``names``.
        """
        if key not in self._where:
            raise DataError(self._missing(key))
        shard, members = self._where[key]
        offset, size = members["json"]
        sample: dict[str, Any] = {"meta": json.loads(self._read(shard, offset, size))}
        wanted = [suffix.removesuffix(".npy") for suffix in members if suffix != "json"] if names is None else names
        for name in wanted:
            if f"{name}.npy" not in members:
                raise DataError(f"{self.root}: sample {key!r} has no array {name!r} (it has {sorted(members)})")
            offset, size = members[f"{name}.npy"]
            buffer = np.empty(size, np.uint8)  # (bytes,): read straight into it, no intermediate copy
            if os.preadv(self._fd(shard), [buffer], offset) != size:
                raise DataError(f"{self.root / shard}: truncated at sample {key!r} ({name}); extract it again")
            sample[name] = npy_array(buffer)
        return sample

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def clip(self, key: str) -> Clip:
        """The stored sample ``key`` as an ``avlearn.io.Clip`` (store kind ``"clips"``)."""
        from avlearn.io import Clip

        self.require("clips", {})
        sample = self[key]
        meta = sample["meta"]
        return Clip(
            frames=sample["frames"],
            frame_times=np.asarray(meta["frame_times"], dtype=np.float64),
            wave=sample["wave"],
            sample_rate=meta["sample_rate"],
            has_audio=meta["has_audio"],
            duration=meta["duration"],
            path=meta["path"],
            notes=tuple(meta["notes"]),
        )

    def _missing(self, key: str) -> str:
        reasons = [f"{row['path']}: {row['reason']}" for row in self.failures() if row["key"] == key]
        why = f"; its extraction failed: {reasons[0]}" if reasons else ""
        return f"{self.root}: no sample {key!r} in the store ({len(self)} samples){why}"

    def _fd(self, shard: str) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()  # a forked worker opens its own descriptors
        if shard not in self._fds:
            self._fds[shard] = os.open(self.root / shard, os.O_RDONLY)
        return self._fds[shard]

    def _read(self, shard: str, offset: int, size: int) -> bytes:
        return os.pread(self._fd(shard), size, offset)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}}

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)
