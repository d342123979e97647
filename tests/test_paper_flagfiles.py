"""Every paper flagfile that runs a search can reach the size of the model the paper found, and is bounded by its
budget: after its rounds the largest reachable network exceeds M (the budget binds), and the paper's size lies
between the backbone and M. Reads flags/*.cfg and flags/paper/*.cfg; nothing is trained."""

import dataclasses
import glob
import os
import re

import pytest

from kdas_tf import assembly, config, dry_run, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The size of the model each search stands for, in millions (PAPER.md section 6, Tables 2 and 3).
PAPER_FOUND = {
    "flags/cifar100.cfg": 0.89, "flags/tinyimagenet.cfg": 0.87,  # KDAS OD, the runs' own search
    "flags/paper/cifar100_kdas_od.cfg": 0.89, "flags/paper/cifar100_kdas_kd.cfg": 0.93,
    "flags/paper/cifar100_nas_ce.cfg": 0.97,
    "flags/paper/tinyimagenet_kdas_od.cfg": 0.87, "flags/paper/tinyimagenet_kdas_kd.cfg": 0.95,
    "flags/paper/tinyimagenet_nas_ce.cfg": 0.90,
    "flags/paper/table3_resnet110_kdas_od.cfg": 2.73, "flags/paper/table3_wrn40_1_kdas_od.cfg": 1.14,
    "flags/paper/table3_wrn16_2_kdas_od.cfg": 1.30, "flags/paper/table3_wrn16_4_kdas_od.cfg": 5.47,
}


def paper_searches():
    """The search flagfiles of the paper's tables, as paths relative to the repository."""
    found = glob.glob(os.path.join(ROOT, "flags", "paper", "*_kdas_*.cfg"))
    found += glob.glob(os.path.join(ROOT, "flags", "paper", "*_nas_*.cfg"))
    found += [os.path.join(ROOT, "flags", name) for name in ("cifar100.cfg", "tinyimagenet.cfg")]
    return sorted(os.path.relpath(path, ROOT) for path in found)


def parsed(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # flagfiles include each other by paths relative to the repository
    return config.from_args([f"--flagfile={path}"])


def test_every_paper_search_has_the_papers_size():
    assert paper_searches() == sorted(PAPER_FOUND)


@pytest.mark.parametrize("path", sorted(PAPER_FOUND))
def test_the_budget_binds_and_the_papers_size_is_reachable(path, monkeypatch):
    run = parsed(path, monkeypatch)
    budget, backbone = assembly.budget(run)
    reach = models.reachable_sizes(
        run.search.backbone, rounds=run.search.rounds, ops_per_addon=run.search.ops_per_addon,
        num_classes=assembly.data_metadata(run)[0], input_shape=assembly.data_metadata(run)[1], shortcut=run.model.shortcut)[-1]
    paper = PAPER_FOUND[path] * 1e6
    assert run.search.paper_found == PAPER_FOUND[path]  # what its dry run prints beside the expected size
    assert reach.largest > budget, f"{path}: the largest reachable network {reach.largest} fits in M = {budget}"
    assert reach.smallest == backbone <= paper <= budget, f"{path}: {PAPER_FOUND[path]}M not in [{backbone}, {budget}]"
    assert models.budget_warning(reach, budget) is None
    assert run.search.rounds * run.search.trials_per_round in range(95, 101)  # the paper's ~100 trials a search


# Table 3's columns: backbone -> its man-made network of similar size (MMN), whose size is the budget.
TABLE3_MMN = {"resnet110": "resnet218", "wrn40_1": "wrn76_1", "wrn16_2": "wrn28_2", "wrn16_4": "wrn28_4"}


@pytest.mark.parametrize("backbone", sorted(TABLE3_MMN))
def test_table3_rows_share_their_columns_teachers(backbone, monkeypatch):
    """The teacher of a Table 3 column is 5 members of its backbone, trained once in the teachers file's
    work directory and read from there by the KDAS and MMN rows; M is the MMN's size as the paper prints it."""
    teachers = parsed(f"flags/paper/table3_{backbone}_teachers.cfg", monkeypatch)
    assert (teachers.teachers.network, teachers.teachers.num_teachers) == (backbone, 5)
    kdas, mmn = (parsed(f"flags/paper/table3_{backbone}_{row}.cfg", monkeypatch) for row in ("kdas_od", "mmn"))
    for run in (kdas, mmn):
        assert run.teachers == dataclasses.replace(teachers.teachers, workdir=teachers.workdir)
        assert run.workdir != teachers.workdir
    assert kdas.search.backbone == backbone
    assert (mmn.train.network, mmn.train.loss) == (TABLE3_MMN[backbone], "kd")
    mmn_size = models.count_parameters(TABLE3_MMN[backbone], assembly.data_metadata(mmn)[0], assembly.data_metadata(mmn)[1])
    assert abs(mmn_size - assembly.budget(kdas)[0]) < 5_000


def test_the_dry_run_prints_the_size_a_median_candidate_of_the_starting_policy_has_in_each_round(monkeypatch):
    path = "flags/paper/cifar100_kdas_od.cfg"
    run = parsed(path, monkeypatch)
    budget, backbone = assembly.budget(run)
    plan = dry_run.describe_plan(run).splitlines()
    start = plan.index(next(line for line in plan if line.startswith("  the controller's policy as the search starts")))
    lines = plan[start + 1:start + 1 + run.search.rounds]
    assert plan[start].endswith(f"(budget {budget / 1e6:.3f}M; the paper found 0.89M):")
    sizes = []
    for round_index, line in enumerate(lines):
        match = re.fullmatch(rf"    after round {round_index + 1}: (\d+\.\d{{3}})M \((\S+)\)", line)
        assert match, line
        arch = models.Architecture.parse(match[2])
        assert all(len(stage) == round_index + 1 for stage in arch.addons)  # each round grew the last one's
        size = models.count_parameters(arch, 100, (32, 32, 3), shortcut=run.model.shortcut)
        assert f"{size / 1e6:.3f}" == match[1] and backbone <= size <= budget, (line, size, budget)
        sizes.append(size)
    assert sizes == sorted(sizes) and sizes[-1] < PAPER_FOUND[path] * 1e6  # the policy alone stays below the paper
