"""The config: built once from flags or by hand, judged once, recorded whole in settings.json; what needs the data
or a network (the budget in parameters) is resolved when a job starts (kdas_tf.assembly)."""

import concurrent.futures
import dataclasses
import os
import subprocess
import sys

import pytest

from kdas_tf import assembly, config, models
from kdas_tf.runtime import storage
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "kdas_tf")
ENTRY_POINTS = ("search", "teachers", "train", "export", "report", "bench", "sweep", "latency")


def base(**sections):
    return config.Config(**{"run": config.RunConfig(workdir="runs/x"), **sections})


def changed(value):
    """Another valid value of a field's type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return value[:1]
    if isinstance(value, float):
        return value / 2
    if isinstance(value, int):
        return value + 1
    return None


def test_every_recipe_field_reaches_the_settings_and_changes_them():
    reference = base().settings()
    for field in dataclasses.fields(config.RecipeConfig):
        assert config.flag_name(field) in reference, field.name
        value = changed(getattr(config.RecipeConfig(), field.name))
        if field.name == "weight_decay":
            value = 5e-4
        if field.name == "precision":
            value = "mixed_bfloat16"
        other = base(recipe=dataclasses.replace(config.RecipeConfig(), **{field.name: value})).settings()
        assert other != reference, field.name


def test_settings_hold_every_field_but_the_ones_a_rerun_may_change():
    settings = base().settings()
    for name, section in config.SECTIONS.items():
        if name == "train":
            continue  # python -m kdas_tf.train records its training in its own results.json
        for field in dataclasses.fields(section):
            if field.name == "search_seed":
                continue  # recorded resolved, below
            assert (config.flag_name(field) in settings) == field.metadata["setting"], field.name
    assert settings["search_seed"] == base().recipe.seed  # --search_seed resolved: by default the run's --seed
    # Where the data lives, how targets reach the step and how trials are spread change no result.
    assert not {"workdir", "data_dir", "manual_dir", "teacher_outputs", "parallel_trials", "strategy"} & set(settings)


def test_a_work_directory_made_before_the_shortcut_setting_holds_projections(tmp_path):
    """Its settings.json lacks --shortcut: resuming it with the new default is refused, not silently mixed."""
    made_before = {k: v for k, v in base().settings().items() if k != "shortcut"}
    storage.write_json(str(tmp_path / "settings.json"), made_before)
    new_default = base(run=config.RunConfig(workdir=str(tmp_path)))
    with pytest.raises(UserError, match="--shortcut was 'projection', now 'zero_pad'"):
        Workdir(str(tmp_path)).claim(new_default.settings(), new_default.unrecorded_settings())
    resumed = dataclasses.replace(new_default, model=config.ModelConfig(shortcut="projection"))
    Workdir(str(tmp_path)).claim(resumed.settings(), resumed.unrecorded_settings())
    assert storage.read_json(str(tmp_path / "settings.json")) == resumed.settings()


def test_flags_and_config_round_trip():
    built = config.from_args(["--flagfile=" + os.path.join(ROOT, "flags", "digits.cfg"), "--workdir=/tmp/w",
                              "--nonesterov", "--lr_decay_at=0.3,0.6", "--student_loss=", "--shortcut=projection"])
    assert built.search.backbone == "resnet8" and built.recipe.lr_decay_at == (0.3, 0.6)
    assert built.model.shortcut == "projection" and built.settings()["shortcut"] == "projection"
    assert built.recipe.nesterov is False and built.search.student_loss == ()
    assert config.from_args(config.to_flags(built)) == built


def test_controller_picks_the_lstm_or_random_search_and_is_a_setting():
    args = ["--flagfile=" + os.path.join(ROOT, "flags", "digits.cfg"), "--workdir=/tmp/w"]
    assert config.from_args(args).controller_config().kind == "lstm"
    random = config.from_args([*args, "--controller=random"])
    assert random.controller_config().kind == "random" and random.settings()["controller"] == "random"
    with pytest.raises(UserError, match="--controller: value should be one of <lstm|random>"):
        config.from_args([*args, "--controller=evolution"])


@pytest.mark.parametrize("args, message", [
    (["--budget=lots"], "--budget='lots' is not a budget"),
    (["--search_epochs=0"], "--search_epochs must be at least 1"),
    (["--val_fraction=1.5"], "val_fraction must be in (0, 1)"),
    (["--backbone=resnet33"], "unknown network 'resnet33'"),
    (["--final_loss=ce,xx"], "--final_loss='xx' is not a loss"),
    (["--lr_decay_at=half"], "--lr_decay_at takes a comma-separated list of floats"),
    (["--teacher_epochs=0"], "--teacher_epochs must be at least 1"),
    (["--shortcut=option_a"], "flag --shortcut=option_a: value should be one of <zero_pad|projection>"),
    (["--workdir="], "--workdir is required"),
    (["--bogus=1"], "Unknown command line flag 'bogus'"),
    (["--manmade=resnet9"], "unknown network 'resnet9'"),
    (["--teacher_network=vgg16"], "unknown network 'vgg16'"),
    (["--architecture=resnet8:conv9x9/skip/skip"], "unknown add-on operation 'conv9x9'"),
    (["--architecture=resnet8:conv3x3/skip"], "expected 3 stages"),
    (["--search_loss=mse"], "--search_loss='mse' is not a loss"),
    (["--epochs=0"], "--epochs must be at least 1"),
    (["--backbone=densenet40_12", "--budget=2x", "--manmade=auto"], "--manmade=auto: densenet40_12 has no deeper"),
])
def test_the_python_api_refuses_what_the_command_line_refuses(args, message):
    with pytest.raises(UserError) as error:
        config.from_args(["--flagfile=" + os.path.join(ROOT, "flags", "digits.cfg"), "--workdir=/tmp/w", *args])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_sections_built_by_hand_are_judged_alike():
    with pytest.raises(UserError, match="--epochs must be at least 1"):
        config.RecipeConfig(epochs=0)
    with pytest.raises(UserError, match="--budget='0' is not a budget"):
        config.SearchConfig(backbone="resnet8", budget="0")


def test_a_budget_is_resolved_in_parameters_when_a_job_starts_and_refused_there_if_the_backbone_exceeds_it():
    digits = (10, (8, 8, 1))
    backbone = models.count_parameters("resnet8", *digits)  # the analytic count, tested against Keras in test_models
    twice = base(search=config.SearchConfig(backbone="resnet8", budget="2x"), data=config.DataConfig("digits"))
    assert assembly.budget(twice) == (2 * backbone, backbone)
    assert assembly.budget(twice, 100, (32, 32, 3)) == (2 * models.count_parameters("resnet8", 100, (32, 32, 3)),
                                                        models.count_parameters("resnet8", 100, (32, 32, 3)))
    millions = base(search=config.SearchConfig(backbone="resnet8", budget="0.15M"))
    assert assembly.budget(millions)[0] == 150_000
    small = base(search=config.SearchConfig(backbone="resnet8", budget="0.01"), data=config.DataConfig("digits"))
    with pytest.raises(UserError, match="raise --budget") as error:  # the config holds it as written
        assembly.budget(small)
    assert "\n" not in str(error.value)


def answer_help(entry, flag):
    """python -m kdas_tf.ENTRY FLAG as a user's shell runs it; its stderr ends by saying whether TensorFlow was
    imported by the time the command answered."""
    probe = (f"import runpy, sys\nsys.argv = ['kdas_tf.{entry}', {flag!r}]\ntry:\n"
             f"    runpy.run_module('kdas_tf.{entry}', run_name='__main__', alter_sys=True)\nfinally:\n"
             "    print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env)


def test_every_command_answers_help_with_exit_0_before_importing_tensorflow_and_lists_the_flags_a_user_needs():
    expected = {"search": ["--workdir", "--dataset", "--epochs", "--strategy", "--budget", "--parallel_trials"],
                "teachers": ["--workdir", "--dataset", "--epochs", "--num_teachers"],
                "train": ["--workdir", "--dataset", "--epochs", "--architecture", "--loss"],
                "export": ["--workdir", "--dataset", "--model"], "report": ["--workdir", "--compare"],
                "bench": ["--network", "--turns", "--[no]quick"], "sweep": ["--budgets", "--budget"],
                "latency": ["--export_table", "--check", "--latency_format"]}
    asked = [(entry, "--help") for entry in ENTRY_POINTS] + [("search", "-h"), ("train", "--helpfull")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda ask: answer_help(*ask), asked))
    for (entry, flag), run in zip(asked, runs):
        assert run.returncode == 0, (entry, flag, run.returncode, run.stderr[-1500:])
        assert run.stderr.splitlines()[-1] == "tensorflow imported: False", (entry, flag, run.stderr[-1500:])
        missing = [n for n in [*expected[entry], "--flagfile", "--verbosity"] if f"{n}:" not in run.stdout]
        assert not missing, (entry, flag, missing, run.stdout[:500])


def test_only_a_verbosity_of_one_or_more_on_the_command_line_lets_tensorflow_speak():
    from kdas_tf.cli import _verbose

    assert [_verbose(["m", *args]) for args in (
        [], ["--verbosity=1"], ["--verbosity", "2"], ["-v", "1"], ["--v=3"], ["--verbosity=0"], ["--verbosity=-1"],
        ["--flagfile=flags/digits.cfg"], ["--workdir=v1"])] == [False, True, True, True, True, False, False, False, False]


def test_a_stop_a_c_extension_wrapped_in_another_error_is_still_a_stop():
    from kdas_tf.cli import Stopped, _stop_within

    stop = Stopped(15)
    try:
        try:
            raise stop
        except Stopped as cause:  # as CPython does when __array__ returns with the signal's exception set
            raise SystemError("returned a result with an exception set") from cause
    except SystemError as wrapped:
        assert _stop_within(wrapped) is stop
    try:
        try:
            raise Stopped(2)
        except Stopped:
            raise UserError("a user's mistake found while stopping") from None
    except UserError as error:
        assert _stop_within(error) is None  # `from None` hides the stop: the error is the user's
    assert _stop_within(ValueError("no stop inside")) is None


def test_search_seed_defaults_to_the_seed_and_a_directory_made_before_it_keeps_its_seed(tmp_path):
    """--search_seed seeds the controller and the oracle; absent, --seed does, as before it existed. A directory
    made before it resumes with its own seed and refuses another search seed."""
    default = base()
    same = base(search=dataclasses.replace(default.search, search_seed=default.recipe.seed))
    other = base(search=dataclasses.replace(default.search, search_seed=7))
    assert default.settings() == same.settings() and other.settings()["search_seed"] == 7
    assert default.controller_config().seed == default.recipe.seed and other.controller_config().seed == 7
    resumes_as_made_and_refuses_another(tmp_path, "search_seed", default, other, "--search_seed was 0, now 7")


def resumes_as_made_and_refuses_another(tmp_path, flag, default, other, message):
    """A directory made before setting `flag` (its settings.json lacks it) resumes with `default`'s settings and
    refuses `other`'s with `message`."""
    made_before = {k: v for k, v in default.settings().items() if k != flag}
    storage.write_json(str(tmp_path / "settings.json"), made_before)
    Workdir(str(tmp_path)).claim(default.settings(), default.unrecorded_settings())  # resumes as it was made
    storage.write_json(str(tmp_path / "settings.json"), made_before)
    with pytest.raises(UserError, match=message):
        Workdir(str(tmp_path)).claim(other.settings(), other.unrecorded_settings())


def test_cost_exponent_is_recorded_and_a_directory_made_before_it_resumes_rewarding_the_top1_alone(tmp_path):
    """--cost_exponent changes what the search finds: settings.json records it; a directory made before it (its
    settings.json lacks it) resumes at w = 0 and refuses another w, like any changed setting."""
    default = base()
    soft = base(search=dataclasses.replace(default.search, cost_exponent=-0.07))
    assert default.settings()["cost_exponent"] == 0.0 and soft.settings()["cost_exponent"] == -0.07
    assert config.from_args(["--workdir=runs/x", "--cost_exponent=-0.07"]).search.cost_exponent == -0.07
    resumes_as_made_and_refuses_another(tmp_path, "cost_exponent", default, soft, "--cost_exponent was 0.0, now -0.07")


@pytest.mark.parametrize("w", ["0.07", "-1.5", "nan"])
def test_a_cost_exponent_that_would_reward_larger_networks_or_swamp_accuracy_is_refused_in_one_line(w):
    with pytest.raises(UserError, match=rf"^--cost_exponent={w}: give w from -1 to 0 \(0: the validation top-1 "
                                        r"alone; MnasNet's soft objective -0.07\); a w above 0 would reward larger "
                                        r"networks$"):
        config.from_args(["--workdir=runs/x", f"--cost_exponent={w}"])
