"""The scripts in tools/ still run against the package they call: each imports (a module moved in kdas_tf breaks
the tool that imports it, and nothing else notices), and the study's command answers through its own script."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = sorted(os.path.basename(path) for path in glob.glob(os.path.join(ROOT, "tools", "*.py")))
TOOLS = os.path.dirname(os.path.join(ROOT, "tools", SCRIPTS[0]))  # tools/bazel/ and the shell scripts: not read


def test_the_tools_are_all_here():
    assert {"bench_order.py", "controller_learning.py", "fashion_mnist_study.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_tool_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)  # as `python tools/NAME` runs it: its own folder first
    spec = importlib.util.spec_from_file_location(f"tool_{name[:-3]}", os.path.join(TOOLS, name))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # defines; main() runs only as __main__


def test_the_study_command_prints_the_pages_tables_from_its_script():
    sys.path.insert(0, TOOLS)
    import fashion_mnist_study_plan as plan
    import fashion_mnist_study_report as report
    printed = subprocess.run([sys.executable, os.path.join(TOOLS, "fashion_mnist_study.py"), "--report"],
                             capture_output=True, text=True, cwd=ROOT, check=True).stdout
    tables = report.report({stage: plan.read_kept(stage) for stage in plan.STAGES})
    assert tables and all(f"{title}\n\n{markdown}" in printed for title, markdown in tables)
