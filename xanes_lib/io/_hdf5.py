"""Private HDF5 and file helpers: attribute codecs, deterministic arrays, atomic writes.

Files written through :func:`atomic_h5` and :func:`atomic_file` appear whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time

import h5py
import numpy as np

try:
    import fcntl
except ImportError:               # Windows: no POSIX locks
    fcntl = None

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


def open_read(source: str, *, kind: str = "a stack file (.h5)") -> h5py.File:
    """Open an HDF5 file read-only; errors name the file, and ``kind`` says what it should be."""
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist; check the path (relative paths start "
                                "from the current working directory).")
    if os.path.isdir(source):
        raise IsADirectoryError(f"{source} is a folder, not {kind}. A folder of TIFF images (one per energy) "
                                "is read with xanes_lib.io.read_tiff_stack(folder, energies); a folder of "
                                "position files with xanes_lib.io.list_positions(folder) and read_position.")
    try:
        return h5py.File(source, "r")
    except OSError as err:
        if "unable to lock" in str(err).lower() or "file locking" in str(err).lower():
            raise OSError(f"{source} is locked by another program ({err}): it is still being written, or "
                          "open for writing in a viewer or a script. Close that program (or wait for the "
                          "scan to finish); to read it anyway set the environment variable "
                          "HDF5_USE_FILE_LOCKING=FALSE before starting Python.") from err
        raise OSError(f"{source} could not be opened as an HDF5 file ({err}); is it {kind} "
                      "and completely copied?") from err


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
    kwargs = dataset_layout(a.shape) if a.ndim >= 2 and a.size else {}
    group.create_dataset(name, data=a, track_times=False, **kwargs)


def dataset_layout(shape: tuple) -> dict:
    """Chunks (one image of at most 512 x 512 pixels) and compression of a stored map or stack."""
    chunks = (1,) * (len(shape) - 2) + tuple(min(n, _CHUNK_EDGE) for n in shape[-2:])
    return dict(chunks=chunks, compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True)


_TMP_SUFFIX = ".tmp"
_TMP_HEX = 12                     # hex digits of the random part of a temporary name
#: Temporary files this process is writing now (other threads' writes are never cleaned up).
_IN_PROGRESS: set[str] = set()
#: Without POSIX locks (Windows), a leftover temporary file is removed only after this long.
_STALE_AFTER_S = 3600.0


def _temporary_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(_TMP_HEX // 2)}{_TMP_SUFFIX}")


def _lock(fd: int, *, block: bool = True) -> bool:
    """Take a POSIX write lock on an open file; False if another process holds one."""
    if fcntl is None:
        return True
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def remove_stale_temporaries(target) -> list[str]:
    """Remove the temporary files a killed writer left beside ``target``; return their paths.

    Temporary files are named ``.<name>.<12 hex digits>.tmp`` in the target's directory. A
    live writer (any process) holds a POSIX lock on its temporary file while it writes, so only
    files whose writer is gone are removed (where POSIX locks do not exist, files older than an
    hour). Called by :func:`atomic_h5` and :func:`atomic_file` before every write.
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(target)))
    pattern = re.compile(rf"^\.{re.escape(name)}\.[0-9a-f]{{{_TMP_HEX}}}{re.escape(_TMP_SUFFIX)}$")
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for entry in sorted(entries):
        path = os.path.join(directory, entry)
        if not pattern.match(entry) or path in _IN_PROGRESS or not os.path.isfile(path):
            continue
        try:
            if fcntl is None:
                if time.time() - os.path.getmtime(path) < _STALE_AFTER_S:
                    continue
                os.unlink(path)
            else:
                fd = os.open(path, os.O_RDWR)
                try:
                    if not _lock(fd, block=False):
                        continue          # a live writer holds it
                    os.unlink(path)
                finally:
                    os.close(fd)
        except OSError:                   # gone meanwhile, or not ours to remove
            continue
        removed.append(path)
    return removed


def check_not_input(target, inputs) -> None:
    """Refuse ``target`` when it is (or links to) one of ``inputs``: outputs never destroy inputs.

    Files are compared with :func:`os.path.samefile` (symbolic and hard links included) when
    both exist, by their resolved paths otherwise. An input that is a folder (of TIFF images)
    protects everything inside it. ``None`` entries are ignored.

    Raises
    ------
    ValueError
        Naming the output, the input it would overwrite, and the fix.
    """
    target = os.fspath(target)
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    for item in inputs or ():
        if item is None:
            continue
        source = os.fspath(item)
        if os.path.isdir(source) and _inside(target, source):
            raise ValueError(f"refusing to write {target}: it lies in the input {source}, a folder (a "
                             "Zarr store, or TIFF images read whole: a new file there changes the input). "
                             "Write the outputs elsewhere.")
        try:
            same = (os.path.samefile(target, source) if os.path.exists(target) and os.path.exists(source)
                    else os.path.realpath(target) == os.path.realpath(source))
        except OSError:
            same = False
        if same:
            root, ext = os.path.splitext(target)
            if os.path.islink(target) or os.path.islink(source):
                how = f" through a symbolic link (both resolve to {os.path.realpath(source)})"
            elif os.path.realpath(target) != os.path.realpath(source):
                how = " through a hard link"
            else:
                how = ""
            raise ValueError(f"refusing to write {target}: it is the input file {source}{how}, and "
                             "outputs never overwrite their inputs. Write the output to a new name, "
                             f"e.g. {root}_out{ext or '.h5'}.")


def _inside(target: str, folder: str) -> bool:
    """Whether ``target`` lies in ``folder`` or below it (links resolved)."""
    t, f = os.path.realpath(target), os.path.realpath(folder)
    return os.path.commonpath([t, f]) == f


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _begin(target: str) -> tuple[str, int]:
    """Remove stale temporaries; create and lock a new temporary file; return its path and fd."""
    remove_stale_temporaries(target)
    while True:
        tmp = _temporary_path(target)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:           # astronomically unlikely name clash: draw again
            continue
        break
    _IN_PROGRESS.add(tmp)
    _lock(fd)
    return tmp, fd


def _end(tmp: str, fd: int) -> None:
    """Remove the temporary file (when still there) and release it."""
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    finally:
        os.close(fd)
        _IN_PROGRESS.discard(tmp)


@contextlib.contextmanager
def atomic_h5(target, *, overwrite: bool = True, inputs=()):
    """Open a new HDF5 file that appears at ``target`` whole, or not at all.

    Yields an h5py File on a temporary file in the target's directory; on success the file
    is synced and renamed onto ``target`` (with ``overwrite=False`` an existing file is never
    clobbered); on any error the temporary file is removed and ``target`` is untouched.
    ``inputs`` (paths) are files the output must not be: writing onto one of them (or a link
    to it) raises ``ValueError`` before anything is written. Temporary files that a killed
    writer left beside ``target`` are removed first (:func:`remove_stale_temporaries`).
    """
    target = os.fspath(target)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {target}: the directory {directory} does not exist; "
                                "create it first (pathlib.Path(path).parent.mkdir(parents=True)).")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {target}: it is a directory; give a file name.")
    check_not_input(target, inputs)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists and overwrite=False; choose another name, delete it, "
                              "or pass overwrite=True.")
    tmp, fd = _begin(target)
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
            _lock(fd)                     # HDF5 may have opened and closed the file: lock again
            yield f
        _lock(fd)                         # closing the HDF5 file released the POSIX lock
        os.fsync(fd)
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
    finally:
        _end(tmp, fd)


@contextlib.contextmanager
def atomic_file(target, *, inputs=()):
    """Yield a temporary path beside ``target``; on success it is synced and renamed onto it.

    For writers that are not HDF5 (JSON, text, torch checkpoints): the file appears whole or
    not at all, and on any error the temporary file is removed. The directory is created.
    The temporary file exists (empty) when yielded: write it in a truncating mode. ``inputs``
    and leftover temporary files are handled as in :func:`atomic_h5`.

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
    check_not_input(target, inputs)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp, fd = _begin(target)
    try:
        yield tmp
        _lock(fd)                         # the writer closing its handle released the lock
        _fsync(tmp)                       # the writer may have replaced the file: sync what is there
        _lock(fd)
        os.replace(tmp, target)
    finally:
        _end(tmp, fd)
