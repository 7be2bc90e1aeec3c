"""Architecture rules of the package: torch only in denoising, small modules, ``__all__``, ruff.

- every room except ``denoising`` (and its numpy-only ``beam`` and ``config``) imports without torch
  (``chunked`` loads its denoising module only when a denoiser is used);
- no module of ``xanes_lib`` is over :data:`MAX_LINES` lines;
- every public module (file name not starting with ``_``) and every package defines
  ``__all__``, and every name listed there exists;
- ``ruff check`` of the repository passes with the project's configuration (pyproject.toml).
"""

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "xanes_lib"
#: Longest module allowed, in lines.
MAX_LINES = 700

_NO_TORCH = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import xanes_lib.io, xanes_lib.spectra, xanes_lib.physics, xanes_lib.simulation, xanes_lib.mapping
import xanes_lib.alignment, xanes_lib.chunked
import xanes_lib.evaluation, xanes_lib.validate, xanes_lib.plot, xanes_lib.notebooks, xanes_lib.explorer
from xanes_lib.denoising import beam, config, strength  # numpy-only modules of denoising
loaded = sorted(m for m, v in sys.modules.items()
                if (m == "torch" or m.startswith("torch.")) and v is not None)
print(json.dumps(loaded))
"""


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _public(path: Path) -> bool:
    """Packages and files whose name does not start with ``_`` (``__main__`` is a script)."""
    return path.name == "__init__.py" or not path.name.startswith("_")


def test_rooms_import_without_torch():
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"importing the rooms without torch failed:\n{proc.stderr}"
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"torch modules were loaded: {loaded}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_short(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}); split it."


@pytest.mark.parametrize("name", [_dotted(p) for p in _modules() if _public(p)])
def test_public_module_defines_all(name):
    if name.startswith("xanes_lib.denoising") and name != "xanes_lib.denoising.beam":
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    names = module.__dict__.get("__all__")
    assert names is not None, f"{name} defines no __all__"
    assert all(isinstance(n, str) for n in names), f"{name}.__all__ holds non-strings"
    assert len(set(names)) == len(names), f"{name}.__all__ lists a name twice"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed in this environment (pip install -e '.[dev]'); "
                    "the lint rule is not checked")
    command = [sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("package", sorted(p.parent for p in PACKAGE.glob("*/__init__.py")),
                         ids=lambda p: p.name)
def test_room_reexports_every_public_name_of_its_modules(package):
    if package.name == "denoising":
        pytest.importorskip("torch")
    room = importlib.import_module(_dotted(package / "__init__.py"))
    for path in sorted(package.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = importlib.import_module(_dotted(path))
        missing = [n for n in module.__all__ if n not in room.__all__]
        assert not missing, f"{room.__name__} does not re-export {missing} of {module.__name__}"
