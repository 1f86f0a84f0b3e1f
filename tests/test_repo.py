"""Repository-level checks: pins agree, notebooks carry checked outputs, assumptions are listed,
and the numpy core stays free of torch."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _pins(lines):
    return {m.group(1).lower(): m.group(2) for line in lines
            if (m := re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line))}


def test_environment_yml_mirrors_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text()
    env = _pins(env_text.splitlines())
    assert req == env
    assert "python=3.11" in env_text and "-e ." in env_text


def test_readme_has_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [line.split("#")[0].strip() for b in blocks for line in b.splitlines()
                if line.strip()]
    assert commands == ["make study", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_have_stored_outputs(nb):
    """nbval skips cells saved without an execution count: a cleared notebook would pass vacuously.
    A checked cell carries the tag nbval-check-output (tools/nbval_tags.py)."""
    cells = json.loads(nb.read_text())["cells"]
    checked = [c for c in cells if c["cell_type"] == "code" and (
        "nbval-check-output" in _tags(c)
        or "".join(c["source"]).lstrip().startswith("# NBVAL_CHECK_OUTPUT"))]
    assert len(checked) >= 2, f"{nb.name}: tag a few key numbers' cells nbval-check-output"
    for c in checked:
        assert c.get("execution_count") is not None, "".join(c["source"])[:80]
        assert c.get("outputs"), "".join(c["source"])[:80]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_no_nbval_marker_is_visible(nb):
    """Readers see code cells: nbval's markers live in cell tags, not in comments."""
    sys.path.insert(0, str(ROOT / "tools"))
    import nbval_tags

    cells = nbval_tags.leftover(json.loads(nb.read_text()))
    assert not cells, (f"{nb.name}: code cells {cells} start with an NBVAL comment; run "
                       f"python tools/nbval_tags.py book/{nb.name}")


def test_nbval_tags_moves_comments_into_tags():
    sys.path.insert(0, str(ROOT / "tools"))
    import nbval_tags

    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "source": ["# NBVAL_CHECK_OUTPUT\n", "print(1)"]},
        {"cell_type": "code", "metadata": {"tags": ["keep"]}, "source": "# NBVAL_IGNORE_OUTPUT\nx"},
        {"cell_type": "markdown", "metadata": {}, "source": ["# NBVAL_CHECK_OUTPUT"]},
    ]}
    assert nbval_tags.leftover(nb) == [0, 1]
    assert nbval_tags.convert(nb) == 2
    assert nb["cells"][0] == {"cell_type": "code", "metadata": {"tags": ["nbval-check-output"]},
                              "source": ["print(1)"]}
    assert nb["cells"][1]["metadata"]["tags"] == ["keep", "nbval-ignore-output"]
    assert nb["cells"][1]["source"] == ["x"]
    assert nb["cells"][2]["source"] == ["# NBVAL_CHECK_OUTPUT"]  # markdown is left alone
    assert nbval_tags.leftover(nb) == []


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_widget_cells_ignore_output(nb):
    """Widget output changes on re-run; those cells must be tagged nbval-ignore-output."""
    for c in json.loads(nb.read_text())["cells"]:
        src = "".join(c.get("source", []))
        if c["cell_type"] == "code" and "_panel(" in src:
            assert "nbval-ignore-output" in c.get("metadata", {}).get("tags", []), src[:80]


def test_every_named_assumption_is_in_the_appendix():
    appendix = (ROOT / "book" / "appendix_assumptions.md").read_text()
    ids = set()
    for py in (ROOT / "aimoe_lib").rglob("*.py"):
        ids |= set(re.findall(r"\bA-[A-Z0-9]+(?:-[A-Z0-9]+)*\b", py.read_text()))
    assert ids, "no named assumptions found"
    missing = sorted(i for i in ids if f"| {i} |" not in appendix)
    assert not missing, f"assumptions used in code but not listed in the appendix: {missing}"


def test_numpy_core_does_not_import_torch():
    code = ("import sys, aimoe_lib, aimoe_lib.hardware, aimoe_lib.models, aimoe_lib.zoo, "
            "aimoe_lib.viz, aimoe_lib.widgets, aimoe_lib.mapping, aimoe_lib.simulator, "
            "aimoe_lib.sweep, aimoe_lib.experiments, aimoe_lib.provisioning, "
            "aimoe_lib.routing_study, aimoe_lib.design_space, aimoe_lib.gpu_readings; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ one home for every rule
def _modules(*folders):
    for folder in folders:
        yield from sorted((ROOT / "aimoe_lib" / folder).glob("*.py"))


def _names_used(path):
    """Every plain name and attribute name a module uses or imports, and the names it calls."""
    import ast

    tree = ast.parse(path.read_text())
    used, called = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            used.update(a.name for a in node.names)
        if isinstance(node, ast.Call):
            f = node.func
            called.add(f.id if isinstance(f, ast.Name) else getattr(f, "attr", ""))
    return used, called


@pytest.mark.parametrize("path", list(_modules("viz", "widgets")), ids=lambda p: p.name)
def test_figures_and_panels_neither_simulate_nor_size_chips(path):
    """viz/ and widgets/ reach simulations and chips sized for a model only through functions of
    the core (a figure may still draw a chip of a shape it is given, as chapter 1's does)."""
    used, called = _names_used(path)
    assert not used & {"simulate", "build_program", "run_engine", "fitting_chip"}, path.name
    assert not called & {"provisioned", "map_model"}, path.name


_ENGINE_RULES = {"F_FIRST", "F_LAST", "F_HEAD", "F_KV_CONSUMER", "pass_layout", "inst_pos",
                 "inst_pass", "inst_tok", "pass_base", "expert_gid", "tile_group"}


@pytest.mark.parametrize("path", [p for p in (ROOT / "aimoe_lib").rglob("*.py")
                                  if "simulator" not in p.parts], ids=lambda p: p.name)
def test_only_the_simulator_reads_flags_and_token_positions(path):
    """Flag bits, passes and token positions have one home: aimoe_lib/simulator/."""
    assert not _names_used(path)[0] & _ENGINE_RULES, path.name


def test_chapter_4_builds_no_program_itself():
    nb = json.loads((ROOT / "book" / "04_simulation.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "build_program" not in code and "trace.critical_path(one)" in code
