"""Private HDF5 and file helpers: attribute codecs, deterministic arrays, atomic writes.

Files written through :func:`atomic_h5` and :func:`atomic_file` appear whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets

import h5py
import numpy as np

#: Attribute listing (as JSON) the attributes of the same object that hold JSON text
#: (dicts, lists, None); they are decoded on reading.
JSON_KEYS_ATTR = "xanes_lib_json_attrs"


_LIBVER = ("earliest", "v110")   # a fixed HDF5 file-format version: reproducible bytes
_GZIP_LEVEL = 4
_CHUNK_EDGE = 512                 # chunks of at most 1 x 512 x 512 pixels (1 MiB in float32)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}"
    return repr(value)


def _json_default(obj):
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def encode_attrs(mapping, *, what: str, reserved=()) -> tuple[list[tuple[str, object]], list[str]]:
    """Turn a dict into (key, value) pairs HDF5 can store; dicts/lists/None become JSON text."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} must be a dict; got {type(mapping).__name__}.")
    pairs, json_keys = [], []
    for key in sorted(mapping, key=str):
        if not isinstance(key, str) or not key:
            raise ValueError(f"{what} keys must be non-empty strings; got {key!r}. Rename it.")
        if key in reserved:
            raise ValueError(f"{what} may not hold the key {key!r}: it is reserved"
                             + (" (set Stack.element / Stack.edge instead)." if key in ("element", "edge")
                                else "."))
        value = mapping[key]
        if isinstance(value, np.generic) and not isinstance(value, np.str_ | np.bytes_):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
                raise ValueError(f"{what}[{key!r}] = {value} does not fit in int64; store it as a string.")
            pairs.append((key, str(value) if isinstance(value, np.str_) else value))
        elif value is None or isinstance(value, dict | list | tuple | np.ndarray):
            try:
                text = json.dumps(value, sort_keys=True, default=_json_default)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{what}[{key!r}] cannot be stored: {err}. Use strings, numbers, "
                                 "and dicts/lists of them.") from None
            pairs.append((key, text))
            json_keys.append(key)
        else:
            raise ValueError(f"{what}[{key!r}] has type {type(value).__name__}, which a file attribute "
                             "cannot hold, so it cannot be stored; use a string, a number, a bool, or a "
                             "dict/list of them (bytes: decode them to str).")
    return pairs, json_keys


def write_attrs(obj, pairs, json_keys) -> None:
    """Store the output of :func:`encode_attrs` on an HDF5 object."""
    for key, value in pairs:
        obj.attrs[key] = value
    if json_keys:
        obj.attrs[JSON_KEYS_ATTR] = json.dumps(sorted(json_keys))


def to_python(value):
    """Make an attribute value read by h5py a plain, JSON-able Python value."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()] if value.ndim else to_python(value[()])
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, h5py.Empty):
        return None
    return value


def read_attrs(obj, *, source: str, exclude=()) -> dict:
    """Attributes of an HDF5 object as Python values, JSON-encoded ones decoded."""
    where = f"{source}:{obj.name}"
    json_keys = []
    if JSON_KEYS_ATTR in obj.attrs:
        try:
            json_keys = json.loads(to_python(obj.attrs[JSON_KEYS_ATTR]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"attribute {JSON_KEYS_ATTR!r} of {where} is not a JSON list ({err}); "
                             "the file was not written by xanes_lib or is damaged: delete that "
                             "attribute to read the others as plain values.") from None
    out = {}
    for key in obj.attrs:
        if key in exclude or key == JSON_KEYS_ATTR:
            continue
        value = to_python(obj.attrs[key])
        if key in json_keys:
            try:
                value = json.loads(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"attribute {key!r} of {where} should hold JSON text but does not "
                                 f"({err}); rewrite it or remove it.") from None
        out[key] = value
    return out


def write_array(group, name: str, a: np.ndarray) -> None:
    """Write an array deterministically (no timestamps), chunked and gzip-compressed if 2-D+."""
    kwargs = {}
    if a.ndim >= 2 and a.size:
        chunks = (1,) * (a.ndim - 2) + tuple(min(n, _CHUNK_EDGE) for n in a.shape[-2:])
        kwargs = dict(chunks=chunks, compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True)
    group.create_dataset(name, data=a, track_times=False, **kwargs)


def _temporary_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_h5(target, *, overwrite: bool = True):
    """Open a new HDF5 file that appears at ``target`` whole, or not at all.

    Yields an h5py File on a temporary file in the target's directory; on success the file
    is synced and renamed onto ``target`` (with ``overwrite=False`` an existing file is never
    clobbered); on any error the temporary file is removed and ``target`` is untouched.
    """
    target = os.fspath(target)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {target}: the directory {directory} does not exist; "
                                "create it first (pathlib.Path(path).parent.mkdir(parents=True)).")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {target}: it is a directory; give a file name.")
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists and overwrite=False; choose another name, delete it, "
                              "or pass overwrite=True.")
    tmp = _temporary_path(target)
    try:
        with h5py.File(tmp, "x", libver=_LIBVER) as f:
            yield f
        _fsync(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)          # fails if target appeared meanwhile: no clobbering
            except FileExistsError:
                raise FileExistsError(f"{target} appeared while writing and overwrite=False; "
                                      "nothing was changed.") from None
            except OSError:                   # file system without hard links
                if os.path.lexists(target):
                    raise FileExistsError(f"{target} exists and overwrite=False.") from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path beside ``target``; on success it is synced and renamed onto it.

    For writers that are not HDF5 (JSON, text, torch checkpoints): the file appears whole or
    not at all, and on any error the temporary file is removed. The directory is created.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_file(d / "a.txt") as tmp:
    ...     _ = pathlib.Path(tmp).write_text("x")
    >>> (d / "a.txt").read_text()
    'x'
    """
    target = os.fspath(target)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = _temporary_path(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
