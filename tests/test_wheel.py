"""The shipped data works from a wheel, not only from the repository (aimoe_lib.shipped).

Builds a wheel of the repository offline, installs it into a scratch virtual environment that
cannot see the repository (its dependencies come from this environment's site-packages through a
``.pth`` file), and, from a folder outside the repository, loads every file of ``data/`` through
:func:`aimoe_lib.shipped.data_path` and the readers that use it.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import aimoe_lib
from aimoe_lib.shipped import data_path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def _shipped_files() -> set[str]:
    """Every data file of the repository's data/ (the package marker and caches aside)."""
    return {p.relative_to(DATA).as_posix() for p in DATA.rglob("*")
            if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts
            and p.suffix != ".pyc"}


def _modules() -> set[str]:
    """Every module of the repository's aimoe_lib/, as a path inside the wheel."""
    return {p.relative_to(REPO).as_posix() for p in (REPO / "aimoe_lib").rglob("*.py")
            if "__pycache__" not in p.parts}


# --- the development (editable) install ------------------------------------------------------


def test_data_path_is_the_repository_data_folder():
    assert Path(aimoe_lib.__file__).resolve().parent == REPO / "aimoe_lib"
    assert data_path().resolve() == DATA.resolve()
    assert data_path("analog", "results.json").resolve() == (DATA / "analog" / "results.json")
    assert data_path("scaling.json").is_file()
    assert data_path("analog").is_dir()


def test_a_missing_file_says_that_data_ships_with_the_package():
    with pytest.raises(FileNotFoundError) as err:
        data_path("nope.json")
    msg = str(err.value)
    assert "data/nope.json" in msg and "ships with the aimoe_lib package" in msg
    assert "reinstall" in msg
    with pytest.raises(FileNotFoundError, match="data/analog/nope.npz"):
        data_path("analog", "nope.npz")
    with pytest.raises(ValueError, match="one plain file or folder name"):
        data_path("analog/results.json")
    with pytest.raises(ValueError):
        data_path("..", "pyproject.toml")


# --- a wheel install ---------------------------------------------------------------------------

# Run by the scratch environment's interpreter, from a folder outside the repository.
LOAD_EVERYTHING = r"""
import json, lzma, sys
import numpy as np
import aimoe_lib
from aimoe_lib.shipped import data_path
from aimoe_lib.analog import corpus, traces

root = data_path()
loaded = {}
for p in sorted(root.rglob("*")):
    if not p.is_file() or p.name == "__init__.py" or "__pycache__" in p.parts:
        continue
    parts = p.relative_to(root).parts
    q = data_path(*parts)
    rel = "/".join(parts)
    if rel.endswith(".json.xz"):
        with lzma.open(q, "rt", encoding="utf-8") as f:
            loaded[rel] = len(json.load(f))
    elif q.suffix == ".json":
        loaded[rel] = len(json.loads(q.read_text(encoding="utf-8")))
    elif q.suffix == ".npz":
        with np.load(q, allow_pickle=False) as z:
            loaded[rel] = sum(z[k].size for k in z.files)
    elif q.suffix == ".md":
        loaded[rel] = len(q.read_text(encoding="utf-8"))
    elif rel.endswith("_gemm.csv"):
        from aimoe_lib import gpu
        loaded[rel] = len(gpu.load_gemm_rates(q))
    elif rel.endswith("_stream.csv"):
        from aimoe_lib import gpu
        loaded[rel] = len(gpu.load_weight_stream(q))
    elif q.suffix == ".csv":
        from aimoe_lib import gpu
        loaded[rel] = len(gpu.load_measured(q))
    else:
        raise SystemExit(f"test_wheel does not know how to load {rel!r}: teach it")

trace_tokens = {}
for model in ("moe-4", "moe-16"):
    spec, trace = traces.load(model)
    trace_tokens[model] = int(trace.choices.shape[0])
works = corpus.load_works()
try:
    data_path("nope.json")
    missing = None
except FileNotFoundError as e:
    missing = str(e)
print(json.dumps({
    "aimoe_lib": aimoe_lib.__file__, "root": str(root), "loaded": loaded,
    "corpus_path": str(corpus.CORPUS_PATH), "trace_dir": str(traces.TRACE_DIR),
    "trace_tokens": trace_tokens, "works": len(works), "torch": "torch" in sys.modules,
    "missing": missing,
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the repository's packaging inputs (so that the build
    leaves no build/ or egg-info in the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("aimoe_lib", "data"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp / "dist"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(src)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        "pip wheel --no-build-isolation failed. It builds offline with this environment's "
        "setuptools, which must be >= 70.1 (or older with the wheel package installed).\n"
        + proc.stdout + proc.stderr)
    (whl,) = out.glob("aimoe_lib-*.whl")
    return whl


def test_the_wheel_carries_every_module_and_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not _modules() - names, "modules missing from the wheel: add their subpackage to " \
        "[tool.setuptools] packages in pyproject.toml"
    data = {n.removeprefix("aimoe_lib/data/") for n in names if n.startswith("aimoe_lib/data/")}
    assert "__init__.py" in data
    assert not _shipped_files() - data, "data files missing from the wheel: add their pattern " \
        "to [tool.setuptools.package-data] in pyproject.toml"


def test_every_shipped_dataset_loads_from_a_wheel_install(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.run(
        [str(py), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel: installing is unpacking
        z.extractall(purelib)
    # Dependencies (numpy, ...) from this environment; its .pth files (the editable install's
    # import hook among them) are not run, and nothing puts the repository on the path.
    deps = sorted(p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
                  if Path(p).is_dir() and Path(p).resolve() != REPO)
    (purelib / "zz_aimoe_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([str(py), "-I", "-c", LOAD_EVERYTHING], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])

    installed = (purelib / "aimoe_lib").resolve()
    assert Path(got["aimoe_lib"]).resolve() == installed / "__init__.py"
    assert not Path(got["aimoe_lib"]).resolve().is_relative_to(REPO)
    assert Path(got["root"]).resolve() == installed / "data"
    assert Path(got["corpus_path"]).resolve().is_relative_to(installed)
    assert Path(got["trace_dir"]).resolve() == installed / "data" / "analog"
    assert set(got["loaded"]) == _shipped_files()
    assert all(n > 0 for n in got["loaded"].values()), got["loaded"]
    assert got["trace_tokens"] == {"moe-4": 32_768, "moe-16": 32_768}
    assert got["works"] == 42
    assert not got["torch"]
    assert "ships with the aimoe_lib package" in got["missing"]
