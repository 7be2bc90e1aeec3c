"""Multi-position scans: several fields of view (and repeats) of one XANES scan.

NSLS-II FXI writes one file per position and repeat: ``<scan>_repeat_<RR>_pos_<PP>.h5``
(``multipos_2D_xanes_scan2``; its ``img_bkg`` may hold the flat frames of every repeat, of
which the file's repeat is used) or ``<scan>_pos_<P>.h5`` (``multipos_2D_xanes_scan3``).
Other exports hold several positions in one file: groups with their own ``img_xanes``
(``pos_01/img_xanes``, with ``X_eng`` there or at the root), or datasets ``img_xanes_pos1``,
``img_pos_02`` next to a shared ``X_eng``.

:func:`list_positions` lists what a folder or a file holds; :func:`read_position` reads one
by name with :func:`xanes_lib.io.read_stack` (same checks and options) and records which in
``Stack.provenance["position"]``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import h5py

from ._hdf5 import open_read
from ._intake import POS_RE, REPEAT_POS_RE, natural_key
from .reading import _positions_in, _read_stack
from .stacks import ENERGY_KEY, GROUND_TRUTH_KEY, IMAGES_KEY, Stack

__all__ = ["HDF5_EXTENSIONS", "Position", "list_positions", "read_position"]

#: File name endings taken for HDF5 stack files when a folder is listed.
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf", ".he5", ".nxs")

_IN_FILE_DATASET_RE = re.compile(r"^(?:img_xanes|img)_?pos(?:ition)?_?(?P<pos>\d+)$", re.IGNORECASE)
_NOT_POSITIONS = (GROUND_TRUTH_KEY, "alignment", "maps")
_READ_OPTIONS = dict(load_flat_dark=True, energy_unit=None, element=None, allow_nonfinite=False,
                     bad_frames="refuse", raw_counts="auto")


@dataclass(frozen=True)
class Position:
    """One field of view (and repeat) of a multi-position scan.

    Attributes
    ----------
    name : str
        Unique in its listing: the file name without extension for one file per position
        (``"xanes_scan2_id_123_repeat_00_pos_01"``), the group or dataset name for positions
        inside one file (``"pos_01"``, ``"img_xanes_pos1"``).
    path : str
        The HDF5 file.
    dataset : str
        Path of the image dataset in the file (``"img_xanes"``, ``"pos_01/img_xanes"``).
    scan : str
        What the names of the positions of one scan share (``"xanes_scan2_id_123"``), or
        the file name for positions inside one file.
    position : int
        Position number as written in the name.
    repeat : int or None
        Repeat number as written in the name (``_repeat_RR_``), None when not repeated.
    """

    name: str
    path: str
    dataset: str
    scan: str
    position: int
    repeat: int | None = None


def _parse_name(stem: str) -> tuple[str, int | None, int] | None:
    """(scan, repeat, position) from a name such as ``scan_repeat_00_pos_01``; None if none."""
    match = REPEAT_POS_RE.match(stem)
    if match:
        return match["scan"] or "", int(match["repeat"]), int(match["pos"])
    match = POS_RE.match(stem)
    if match:
        return match["scan"] or "", None, int(match["pos"])
    return None


def _in_file(path: str) -> list[Position]:
    """Positions stored inside one file (groups with ``img_xanes``, ``img_xanes_posN`` datasets)."""
    scan = os.path.splitext(os.path.basename(path))[0]
    found = []
    with open_read(path) as f:
        for key in sorted(_positions_in(f), key=natural_key):
            if isinstance(f[key], h5py.Group):
                digits = re.findall(r"\d+", key)
                number = int(digits[-1]) if digits else len(found)
                found.append(Position(key, path, f"{key}/{IMAGES_KEY}", scan, number))
            else:
                found.append(Position(key, path, key, scan, int(_IN_FILE_DATASET_RE.match(key)["pos"])))
        if found and not all(ENERGY_KEY in f[p.dataset].parent or ENERGY_KEY in f for p in found):
            missing = [p.name for p in found if ENERGY_KEY not in f[p.dataset].parent and ENERGY_KEY not in f]
            raise ValueError(f"{path} holds positions {missing} without {ENERGY_KEY!r} (in their group or at "
                             "the root): their energies are unknown; re-export them with X_eng.")
    return found


def list_positions(path) -> list[Position]:
    """List the positions (and repeats) of a multi-position scan: a folder or one file.

    Parameters
    ----------
    path : str or os.PathLike
        A folder: its HDF5 files (:data:`HDF5_EXTENSIONS`) named ``..._repeat_RR_pos_PP``
        or ``..._pos_PP`` (other files are not listed). A file: the positions stored inside
        it (groups holding ``img_xanes``, datasets ``img_xanes_posN`` / ``img_posN``), or,
        when it holds none and its name is a position name, the file itself.

    Returns
    -------
    list of Position
        Sorted by scan, repeat and position; empty when there is none.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If positions inside a file have no energies.

    Examples
    --------
    >>> import tempfile, numpy as np, h5py, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for p in (0, 1):
    ...         with h5py.File(os.path.join(d, f"xanes_id_7_repeat_00_pos_{p:02d}.h5"), "w") as f:
    ...             f["img_xanes"] = np.ones((2, 3, 3), np.float32)
    ...     [p.name for p in list_positions(d)]
    ['xanes_id_7_repeat_00_pos_00', 'xanes_id_7_repeat_00_pos_01']
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist; give a folder of position files or a file "
                                "holding several positions.")
    if os.path.isdir(source):
        found = []
        for entry in sorted(os.listdir(source), key=natural_key):
            stem, ext = os.path.splitext(entry)
            parsed = _parse_name(stem)
            full = os.path.join(source, entry)
            if ext.lower() in HDF5_EXTENSIONS and parsed and os.path.isfile(full):
                scan, repeat, number = parsed
                found.append(Position(stem, full, IMAGES_KEY, scan, number, repeat))
    else:
        found = _in_file(source)
        parsed = _parse_name(os.path.splitext(os.path.basename(source))[0])
        if not found and parsed:
            scan, repeat, number = parsed
            found = [Position(os.path.splitext(os.path.basename(source))[0], source, IMAGES_KEY, scan,
                              number, repeat)]
    return sorted(found, key=lambda p: (natural_key(p.scan), -1 if p.repeat is None else p.repeat,
                                        p.position, natural_key(p.name)))


def _select(positions: list[Position], name, source: str) -> Position:
    if isinstance(name, Position):
        return name
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a position name (str), e.g. 'repeat_00_pos_01'; got {name!r}.")
    listed = ", ".join(p.name for p in positions[:20]) + (" ..." if len(positions) > 20 else "")
    exact = [p for p in positions if name == p.name or (p.dataset == IMAGES_KEY
                                                         and name == os.path.basename(p.path))]
    if exact:
        return exact[0]
    parsed = _parse_name(name)
    if parsed is not None:
        scan, repeat, number = parsed
        matches = [p for p in positions if p.position == number and (repeat is None or p.repeat == repeat)
                   and (not scan or p.scan == scan)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"the position {name!r} of {source} is ambiguous: {[p.name for p in matches]}; "
                             "give one of these names in full.")
    raise ValueError(f"{source} holds no position {name!r}; its positions are: {listed or 'none'} (see "
                     "list_positions). Give one of these names, or a short form such as 'repeat_00_pos_01' "
                     "or 'pos_01'.")


def read_position(path, name, **options) -> Stack:
    """Read one position (and repeat) of a multi-position scan, by name.

    Parameters
    ----------
    path : str or os.PathLike
        A folder of position files or a file holding several positions (see
        :func:`list_positions`).
    name : str or Position
        A name from :func:`list_positions` (or the file name), or a short form that picks one
        position: ``"repeat_00_pos_01"``, ``"pos_1"`` (when there are no repeats, or one).
    **options
        Passed to :func:`xanes_lib.io.read_stack` (``raw_counts``, ``bad_frames``,
        ``element``, ...).

    Returns
    -------
    Stack
        As :func:`xanes_lib.io.read_stack`, with ``provenance["position"]`` (name, scan,
        position, repeat, dataset). For a repeat file whose ``img_bkg``/``img_dark`` hold
        the frames of every repeat (FXI), the block of its repeat is used.

    Raises
    ------
    ValueError
        If the name matches no position or several (the positions are listed), and for
        every reason :func:`xanes_lib.io.read_stack` refuses a stack.
    TypeError
        For an option :func:`xanes_lib.io.read_stack` does not take.
    """
    source = os.fspath(path)
    unknown = sorted(set(options) - set(_READ_OPTIONS))
    if unknown:
        raise TypeError(f"read_position got unknown option(s) {unknown}; it takes those of read_stack: "
                        f"{sorted(_READ_OPTIONS)}.")
    chosen = _select(list_positions(source), name, source)
    record = {k: v for k, v in asdict(chosen).items() if k != "path"}
    return _read_stack(chosen.path, **{**_READ_OPTIONS, **options}, dataset=chosen.dataset,
                       repeat=chosen.repeat, position=record)
