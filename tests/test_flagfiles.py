"""Every flagfile under flags/ is read by the entry point it is made for, with values that pass every check
(--dry_run: flags judged, the plan printed, nothing read or written)."""

import concurrent.futures
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def dry_run(path):
    command = [sys.executable, "-m", f"kdas_tf.{entry_point(path)}", f"--flagfile={path}", "--dry_run"]
    if path.endswith("_recipe.cfg"):
        command.append("--workdir=runs/recipe")
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def results():
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(FLAGFILES, pool.map(dry_run, FLAGFILES)))


def test_the_paper_rows_and_runs_have_flagfiles():
    names = {os.path.basename(p) for p in FLAGFILES}
    for dataset in ("cifar100", "tinyimagenet"):
        for row in ("teachers", "kdas_od", "kdas_kd", "nas_ce", "resnet62", "resnet110"):
            assert f"{dataset}_{row}.cfg" in names
    for backbone in ("resnet110", "wrn40_1", "wrn16_2", "wrn16_4"):  # Table 3's columns
        for row in ("teachers", "kdas_od", "mmn"):
            assert f"table3_{backbone}_{row}.cfg" in names
    assert {"digits.cfg", "cifar100.cfg", "tinyimagenet.cfg"} <= names


@pytest.mark.parametrize("path", FLAGFILES)
def test_flagfile_passes_every_check_of_its_entry_point(path, results):
    result = results[path]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("dry run"), result.stdout
    assert "WARNING" not in result.stdout, result.stdout  # a search whose budget cannot bind
    assert not os.path.exists(os.path.join(ROOT, "runs", "recipe"))  # a dry run writes nothing


def test_weight_decay_defaults_to_the_papers_per_family():
    from kdas_tf.config import RecipeConfig

    decays = [RecipeConfig().train_config(network=n).weight_decay for n in ("resnet32", "wrn16_4", "densenet40_12")]
    assert decays == [1e-4, 5e-4, 5e-4]
