"""Every flagfile under flags/ is read by the entry point it is made for, with values that pass every check.

Each flagfile is parsed in-process with exactly the flags of its entry point (the entry's SECTIONS, through
config.from_args: the checks and one-line errors of the command line); a search's plan is the one its
--dry_run prints. One real `--dry_run` per entry point checks that the command line reads them alike
(flags judged, the plan printed, nothing read or written) without paying TensorFlow's import 30 times.
"""

import glob
import os
import subprocess
import sys

import pytest

from kdas_tf import config, dry_run, search, teachers, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = {"search": search, "teachers": teachers, "train": train}


def entry_point(path):
    """The search reads the run files and the KDAS/NAS rows; teachers the shared ensembles and recipes; train
    the man-made networks (Table 2's ResNet-62/110, Table 3's MMN)."""
    name = os.path.basename(path)
    if name.endswith(("_teachers.cfg", "_recipe.cfg")):
        return "teachers"
    if os.path.basename(os.path.dirname(path)) != "paper" or "_kdas_" in name or "_nas_" in name:
        return "search"
    return "train"


FLAGFILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "flags", "**", "*.cfg"), recursive=True))


def extra_args(path):
    return ["--workdir=runs/recipe"] if path.endswith("_recipe.cfg") else []


def test_the_paper_rows_and_runs_have_flagfiles():
    names = {os.path.basename(p) for p in FLAGFILES}
    for dataset in ("cifar100", "tinyimagenet"):
        for row in ("teachers", "kdas_od", "kdas_kd", "nas_ce", "resnet62", "resnet110"):
            assert f"{dataset}_{row}.cfg" in names
    for backbone in ("resnet110", "wrn40_1", "wrn16_2", "wrn16_4"):  # Table 3's columns
        for row in ("teachers", "kdas_od", "mmn"):
            assert f"table3_{backbone}_{row}.cfg" in names
    assert {"digits.cfg", "cifar100.cfg", "tinyimagenet.cfg", "fashion_mnist.cfg"} <= names


@pytest.mark.parametrize("path", FLAGFILES)
def test_flagfile_passes_every_check_of_its_entry_point(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # flagfiles include each other by paths from the repository root
    entry = entry_point(path)
    run = config.from_args([f"--flagfile={path}", *extra_args(path)], sections=ENTRY_POINTS[entry].SECTIONS)
    if entry == "search":
        assert "WARNING" not in dry_run.describe_plan(run)  # a search whose budget cannot bind
    if entry == "train":
        run.train.parsed()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_command_line_dry_run_reads_a_flagfile_like_the_library(entry):
    path = next(p for p in FLAGFILES if entry_point(p) == entry and "paper" in p)
    estimate = ["--noestimate"] if entry == "search" else []  # timing ResNet-32 here: test_progress times digits
    result = subprocess.run([sys.executable, "-m", f"kdas_tf.{entry}", f"--flagfile={path}", "--dry_run",
                             *extra_args(path), *estimate], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("dry run"), result.stdout
    assert "WARNING" not in result.stdout, result.stdout
    assert not os.path.exists(os.path.join(ROOT, "runs", "recipe"))  # a dry run writes nothing


def test_weight_decay_defaults_to_the_papers_per_family():
    decays = [config.RecipeConfig().train_config(network=n).weight_decay
              for n in ("resnet32", "wrn16_4", "densenet40_12")]
    assert decays == [1e-4, 5e-4, 5e-4]
