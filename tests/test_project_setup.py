"""The project's own set-up files agree with each other."""
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(#.*)?$", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return dict(_name_and_spec(r) for r in requirements)


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-e") or entry.split(">")[0].split("<")[0].split("=")[0] in ("python", "pip"):
                continue
            name, spec = _name_and_spec(entry)
            found[CONDA_TO_PIP.get(name, name)] = spec
    return found


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert _environment_requirements().keys() == _pyproject_requirements().keys()


def test_environment_yml_uses_the_same_version_bounds_as_pyproject():
    pyproject = _pyproject_requirements()
    mismatched = {k: (v, pyproject[k]) for k, v in _environment_requirements().items() if v != pyproject[k]}
    assert mismatched == {}


def test_no_dependency_is_pinned_exactly():
    pinned = [name for name, spec in _pyproject_requirements().items() if "==" in spec]
    assert pinned == []


def test_torch_has_an_upper_bound_so_pip_keeps_the_installed_build():
    assert "<" in _pyproject_requirements()["torch"]


def _readme_command(marker):
    readme = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```\s*<!-- /{marker} -->", readme, re.S)
    assert block, f"README.md must hold a bash block between <!-- {marker} --> markers"
    return block.group(1)


def test_readme_set_up_installs_the_cpu_torch_before_the_project():
    setup = _readme_command("setup-command")
    assert "torch==2.13.0" in setup.split('-e ".[notebooks,test,docs]"')[0]


def test_ci_runs_the_readme_set_up_and_test_commands_and_nothing_else():
    ci = (ROOT / ".ci" / "run").read_text()
    # The commands CI evaluates are read from the README itself ...
    evaluated = re.findall(r"readme_block ([\w-]+)", ci)
    assert evaluated == ["setup-command", "test-command"]
    _readme_command("setup-command"), _readme_command("test-command")
    # ... and CI installs nothing the README does not say.
    assert not re.search(r"pip install|apt-get|conda ", ci)


def test_readme_table_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
    assert notebooks, "the course has notebooks"
    missing = [name for name in notebooks if name not in readme]
    assert missing == []


def test_notebook_times_in_readme_and_headers_are_the_measured_ones():
    """benchmarks/notebook_times.py --write-docs is the one source: README row, header and JSON agree."""
    report = json.loads((ROOT / "benchmarks" / "results" / "notebook_times.json").read_text())
    measured = {r["notebook"]: round(r["seconds"]) for r in report["notebooks"]}
    assert sorted(measured) == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
    readme = (ROOT / "README.md").read_text()
    for name, seconds in measured.items():
        row = re.search(rf"^\| {name[:2]} \| .*\| ~(\d+) s \|$", readme, re.M)
        assert row and int(row.group(1)) == seconds, f"README row of {name}"
        header = "".join(json.loads((ROOT / "notebooks" / name).read_text())["cells"][0]["source"])
        expected = (f"Runs in about {seconds} s on a {report['machine']} CPU "
                    f"({report['kernel_threads']} threads).")
        assert expected in header, f"{name}'s first cell should say: {expected}"
    assert f"All ten run top to bottom in {report['total_s']:.0f} s" in readme


def test_gpu_check_stops_with_a_clear_message_where_torch_sees_no_cuda(tmp_path):
    """benchmarks/gpu_check.sh is for the lent GPU machine: on a CPU (without the rehearsal switch) it
    must say why it stops and exit non-zero, rather than report CPU runs as GPU checks."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: gpu_check.sh would run its checks here")
    env = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_ALLOW_CPU"}
    env["OUT"] = str(tmp_path)
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "torch sees no CUDA device" in run.stdout
    assert "GPU_CHECK_ALLOW_CPU=1" in run.stdout
