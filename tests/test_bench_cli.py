"""Command lines answer --help with their usage (exit 0) and refuse unknown names (exit 2)."""

import subprocess
import sys

import pytest

from aimoe_lib import bench


@pytest.mark.parametrize("module, says", [
    ("aimoe_lib.bench", "usage: python -m aimoe_lib.bench"),
    ("aimoe_lib.experiments", "usage: python -m aimoe_lib.experiments"),
    ("aimoe_lib.design_space", "usage: python -m aimoe_lib.design_space"),
    ("aimoe_lib.analog.train", "usage: python -m aimoe_lib.analog.train"),
])
def test_help_prints_usage(module, says):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(says), out.stdout[:200]


def test_bench_help_lists_the_suites(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["-h"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "mapping" in out and "sim" in out and "SUITE" in out


def test_bench_refuses_an_unknown_suite_before_running_anything(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(bench, "SUITES", {n: (lambda n=n: ran.append(n)) for n in bench.SUITES})
    with pytest.raises(SystemExit) as e:
        bench.main(["mapping", "nope"])
    assert e.value.code == 2 and ran == []
    assert "unknown benchmark suite(s) 'nope'; choose from mapping, sim" in capsys.readouterr().err
    assert bench.main(["sim"]) == 0 and ran == ["sim"]


def test_bench_internal_case_refuses_unknown_names(capsys):
    assert bench.main(["_case", "sim", "no such case"]) == 2
    assert "_case needs a suite" in capsys.readouterr().err
