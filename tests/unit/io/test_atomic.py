"""Atomic writes of xanes_lib.io: outputs never destroy inputs, leftovers of killed writers go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xanes_lib.io import Stack, read_stack, stack_checksum, write_stack
from xanes_lib.io._hdf5 import atomic_file, atomic_h5, check_not_input, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[3]
STACK = Stack(np.random.default_rng(0).uniform(0.3, 1.0, (4, 5, 6)).astype(np.float32),
              np.array([8300.0, 8330.0, 8340.0, 8400.0]), "Ni")


def _temporaries(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


def _start_writer(target, *, kind="h5"):
    """A separate process that opens an atomic write of ``target`` and waits (to be killed)."""
    opener = ("atomic_h5(sys.argv[1])" if kind == "h5" else "atomic_file(sys.argv[1])")
    code = textwrap.dedent(f"""
        import sys, time
        from xanes_lib.io._hdf5 import atomic_h5, atomic_file
        with {opener} as handle:
            print("writing", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, os.fspath(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


@pytest.mark.parametrize("kind", ["h5", "file"])
def test_leftover_of_a_killed_writer_is_removed_on_the_next_write(tmp_path, kind):
    target = tmp_path / "out.h5"
    proc = _start_writer(target, kind=kind)
    try:
        (live,) = _temporaries(tmp_path)
        assert live.startswith(".out.h5.")
        write_stack(target, STACK)                 # a live writer's temporary file is left alone
        assert _temporaries(tmp_path) == [live]
    finally:
        proc.send_signal(signal.SIGKILL)           # killed mid-write: no cleanup of its own
        proc.wait(timeout=30)
    assert _temporaries(tmp_path) == [live]
    write_stack(target, STACK)
    assert _temporaries(tmp_path) == []
    np.testing.assert_array_equal(read_stack(target).transmission, STACK.transmission)


def test_leftovers_of_other_targets_and_own_writes_are_kept(tmp_path):
    other = tmp_path / ".other.h5.0123456789ab.tmp"
    other.write_bytes(b"x")
    odd = tmp_path / ".out.h5.notours.tmp"
    odd.write_bytes(b"x")
    stale = tmp_path / ".out.h5.00000000abcd.tmp"
    stale.write_bytes(b"half")
    with atomic_h5(tmp_path / "out.h5") as f:
        assert not stale.exists()
        f["x"] = 1
        own = [n for n in _temporaries(tmp_path) if n not in (other.name, odd.name)]
        assert len(own) == 1
        assert remove_stale_temporaries(tmp_path / "out.h5") == []     # the write in progress stays
    assert _temporaries(tmp_path) == sorted([other.name, odd.name])


def test_atomic_file_refuses_an_input_and_keeps_it(tmp_path):
    source = tmp_path / "refs.json"
    source.write_text("{}")
    before = stack_checksum(source)
    with pytest.raises(ValueError, match=r"refusing to write .*refs\.json: it is the input file"):
        with atomic_file(source, inputs=[source]):
            pytest.fail("the write must not start")
    assert stack_checksum(source) == before and _temporaries(tmp_path) == []


def test_check_not_input_compares_resolved_paths(tmp_path):
    a = tmp_path / "a.h5"
    check_not_input(a, [tmp_path / "b.h5", None])              # different, neither exists
    with pytest.raises(ValueError, match="input file"):
        check_not_input(a, tmp_path / "sub" / ".." / "a.h5")  # same path spelled differently
    check_not_input(a, [])


def test_refused_write_keeps_an_existing_target(tmp_path):
    raw = tmp_path / "raw.h5"
    write_stack(raw, STACK)
    stack = read_stack(raw)
    before = stack_checksum(raw)
    with pytest.raises(ValueError, match="outputs never overwrite their inputs"):
        write_stack(raw, stack, overwrite=False)
    write_stack(tmp_path / "copy.h5", stack)                  # a new name is fine
    assert stack_checksum(raw) == before
