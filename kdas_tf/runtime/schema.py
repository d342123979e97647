"""What each state file a run reads back must hold, checked before anything uses it.

A run trusts its own files only as far as their schema: a value of the wrong type, not finite or out of
range (a file edited by hand, a disk fault) would otherwise travel into rewards, the served row and the
tables. `read` refuses such a file in one line that names it, the field, the value found and the value
expected, and says how to rebuild the file; it only reads, so nothing on disk is changed.

A spec is data: an `Expect` (one value), a dict {key: spec} (an object with those keys; `may_lack(spec)`
for a key older files lack), `list_of(spec)` or `each_value(spec)`.
"""

import dataclasses
import glob
import math
import os
from typing import Any, Callable

from keras_tuner.engine import trial as trial_module

from kdas_tf import models
from kdas_tf.models.costs import METRICS
from kdas_tf.runtime import rows, storage
from kdas_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Expect:
    """One value: `what` it must be, in words, and the test `holds(value)`."""

    what: str
    holds: Callable[[Any], bool]


@dataclasses.dataclass(frozen=True)
class _List:
    item: Any


@dataclasses.dataclass(frozen=True)
class _Values:
    value: Any


@dataclasses.dataclass(frozen=True)
class _MayLack:
    spec: Any


def list_of(spec):
    return _List(spec)


def each_value(spec):
    """An object whose every value fits `spec` (its keys are free: trial ids, architectures)."""
    return _Values(spec)


def may_lack(spec):
    """A key that files written before it existed do not have."""
    return _MayLack(spec)


def optional(expect):
    return Expect(f"{expect.what} or null", lambda v: v is None or expect.holds(v))


def one_of(*choices):
    return Expect(f"one of {', '.join(map(repr, choices))}", lambda v: isinstance(v, str) and v in choices)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_architecture(value):
    try:
        models.Architecture.parse(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


MISSING = object()  # the value of a key the file lacks
NUMBER = Expect("a finite number", _is_real)
FRACTION = Expect("a finite number in [0, 1]", lambda v: _is_real(v) and 0 <= v <= 1)
COUNT = Expect("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE = Expect("an integer >= 1", lambda v: _is_int(v) and v >= 1)
INTEGER = Expect("an integer", _is_int)
TEXT = Expect("a string", lambda v: isinstance(v, str))
FLAG = Expect("true or false", lambda v: isinstance(v, bool))
OBJECT = Expect("an object", lambda v: isinstance(v, dict))
ARCHITECTURE = Expect("an architecture such as 'resnet8:conv3x3+skip/skip+skip/skip+skip'", _is_architecture)
TRIAL_STATUS = one_of(*(getattr(trial_module.TrialStatus, name) for name in
                        ("RUNNING", "IDLE", "INVALID", "STOPPED", "COMPLETED", "FAILED")))
LOSS = one_of(*rows.LOSSES)

# --- the specs of the files ---------------------------------------------------------------------------

SPLIT_METRICS = {"loss": NUMBER, "top1": FRACTION, "top5": FRACTION}

FINAL_ROW = {  # final/ROW/results.json (kdas_tf.distill.finals)
    "architecture": ARCHITECTURE, "loss": LOSS, "epochs": POSITIVE, "parameters": POSITIVE,
    "shortcut": may_lack(TEXT), "val": SPLIT_METRICS, "test": SPLIT_METRICS,
    "train_images": may_lack(POSITIVE), "trained_on_validation": may_lack(FLAG),  # since 2026-12-03
}

TEACHER_REPORT = {  # teachers/results.json (kdas_tf.distill.ensemble.ensemble_report, with network and size)
    "num_teachers": POSITIVE, "network": TEXT, "parameters_per_member": POSITIVE,
    "member_test_top1": list_of(FRACTION), "member_test_top1_mean": FRACTION, "member_test_top1_std": FRACTION,
    "ensemble_test_top1": FRACTION, "ensemble_test_top1_by_size": may_lack(list_of(FRACTION)),
    "oracle_test_top1": FRACTION, "member_train_top1_mean": FRACTION,
    "train_members_correct_histogram": list_of(FRACTION),
    # since 2026-12-03: the same on the validation split (a study picks teachers without the test split)
    "member_val_top1": may_lack(list_of(FRACTION)), "member_val_top1_mean": may_lack(FRACTION),
    "member_val_top1_std": may_lack(FRACTION), "ensemble_val_top1": may_lack(FRACTION),
    "ensemble_val_top1_by_size": may_lack(list_of(FRACTION)), "oracle_val_top1": may_lack(FRACTION),
    # each member's file and content hash (trained members' since 2026-12-03): one put in a member's place is refused
    "members": may_lack(list_of({"path": may_lack(TEXT), "sha256": TEXT})),  # Python's models: no path
}

CONTROLLER_STATE = {"format": TEXT, "rng": OBJECT, "baseline": may_lack(optional(NUMBER)),
                    "update_count": may_lack(COUNT)}

ORACLE_STATE = {  # search/oracle.json: KerasTuner's part, then KDASOracle's
    "ongoing_trials": each_value(TEXT), "start_order": list_of(TEXT), "end_order": list_of(TEXT),
    "run_times": each_value(COUNT), "retry_queue": list_of(TEXT), "seed": INTEGER, "seed_state": INTEGER,
    "tried_so_far": list_of(TEXT), "id_to_hash": each_value(optional(TEXT)), "hyperparameters": OBJECT,
    "display": OBJECT,
    "kdas": {
        "round": COUNT, "round_converged": FLAG, "round_backbones": list_of(ARCHITECTURE),
        "controller": CONTROLLER_STATE, "known_scores": each_value(FRACTION), "trial_updates": COUNT,
        "repeated_samples": COUNT, "repeat_updates": COUNT, "trial_tuners": may_lack(each_value(TEXT)),
        "trial_losses": may_lack(each_value(COUNT)), "budget": POSITIVE,
    },
}


def trial_spec(slot_names):
    """search/trial_N/trial.json: the candidate's values (one add-on op per slot), status and reward."""
    values = {"architecture": ARCHITECTURE, "round": COUNT, "parameters": POSITIVE,
              **{slot: one_of(*models.ADDON_OPS) for slot in slot_names}}
    observation = {"step": COUNT, "value": list_of(FRACTION)}
    return {
        "trial_id": TEXT, "status": TRIAL_STATUS, "score": optional(FRACTION), "best_step": optional(COUNT),
        "message": optional(TEXT), "hyperparameters": {"values": values},
        "metrics": {"metrics": each_value({"direction": one_of("min", "max"),
                                           "observations": list_of(observation)})},
    }


TRIAL_SUMMARY = {"trial_id": TEXT, "status": TRIAL_STATUS, "architecture": optional(ARCHITECTURE),
                 "parameters": optional(POSITIVE), "val_top1": optional(FRACTION),
                 "macs": may_lack(POSITIVE), "latency_ns": may_lack(POSITIVE)}  # a MACs or latency budget's cost
FOUND_LATENCY = {  # a latency budget's found network, predicted and measured (deploy.latency_check.found_latency)
    "architecture": ARCHITECTURE, "predicted_ms": NUMBER, "measured_ms": NUMBER, "interval_ms": list_of(NUMBER),
    "budget_ms": NUMBER, "within_budget": FLAG, "backbone_table_ms": NUMBER, "backbone_measured_ms": NUMBER,
    "format": TEXT, "threads": POSITIVE, "measured": TEXT, "times_backbone": NUMBER, "at_table_speed_ms": NUMBER,
    "at_table_speed_interval_ms": list_of(NUMBER), "within_budget_as_measured": FLAG}
SEED_SUMMARY = {"top1": FRACTION, "top1_std": may_lack(FRACTION)}
RUN_RESULTS = {  # WORKDIR/results.json (kdas_tf.reporting.results.collect): what its readers (report, export) take from it
    "teacher": {key: TEACHER_REPORT[key] for key in (
        "num_teachers", "network", "parameters_per_member", "ensemble_test_top1", "ensemble_test_top1_by_size",
        "member_train_top1_mean", "train_members_correct_histogram")},
    "budget": POSITIVE, "backbone": ARCHITECTURE, "backbone_parameters": POSITIVE, "search_loss": LOSS,
    "found_architecture": ARCHITECTURE, "trials": list_of(TRIAL_SUMMARY),
    "final": each_value({"architecture": ARCHITECTURE, "parameters": POSITIVE, "val": SEED_SUMMARY,
                         "test": SEED_SUMMARY, "seeds": may_lack(list_of(FINAL_ROW))}),
    "exported": may_lack(optional(TEXT)), "exported_seed": may_lack(COUNT),
    "budget_metric": may_lack(one_of(*METRICS)), "backbone_cost": may_lack(POSITIVE),
    "latency": may_lack(FOUND_LATENCY),
}


def read_final_row(path):
    """A final training's results.json (kdas_tf.distill.finals), checked."""
    return read(path, FINAL_ROW, "delete it and rerun the same command: that training is evaluated again from its "
                "checkpoints (retrained if they are gone)")


def read_teacher_report(path):
    """teachers/results.json (kdas_tf.distill.ensemble), checked."""
    return read(path, TEACHER_REPORT, "delete it and rerun the same command to write it again from the "
                "finished members")


def read_run_results(path):
    """A run's results.json, checked."""
    return read(path, RUN_RESULTS, "rerun the run's python -m kdas_tf.search command to write it again (finished "
                "work is read back, not redone)")


# --- checking -----------------------------------------------------------------------------------------


def _first_problem(value, spec, field):
    """(field, value found, what was expected) of the first value `spec` refuses, or None."""
    if isinstance(spec, Expect):
        return None if spec.holds(value) else (field, value, spec.what)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return field, value, "an object"
        for key, inner in spec.items():
            if key not in value:
                if isinstance(inner, _MayLack):
                    continue
                return _join(field, key), MISSING, inner.what if isinstance(inner, Expect) else "an object"
            problem = _first_problem(value[key], inner.spec if isinstance(inner, _MayLack) else inner,
                                     _join(field, key))
            if problem:
                return problem
        return None
    if isinstance(spec, _List):
        if not isinstance(value, list):
            return field, value, "a list"
        items, inner = enumerate(value), spec.item
    else:
        if not isinstance(value, dict):
            return field, value, "an object"
        items, inner = value.items(), spec.value
    for key, item in items:
        problem = _first_problem(item, inner, _join(field, key))
        if problem:
            return problem
    return None


def _join(field, key):
    return f"{field}[{key}]" if isinstance(key, int) else f"{field}.{key}" if field else str(key)


def _shown(value, limit=60):
    if value is MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def invalid(path, field, value, expected, rebuild):
    """The one-line error for `path`'s `field`."""
    return UserError(f"{path} is invalid: {field or 'its content'} is {_shown(value)}, expected {expected}; {rebuild}")


def check(path, value, spec, rebuild):
    """Return `value` (the content of `path`) if it fits `spec`; else raise the one line naming what does not."""
    problem = _first_problem(value, spec, "")
    if problem:
        raise invalid(path, *problem, rebuild)
    return value


def read(path, spec, rebuild):
    """`path`'s JSON content, checked against `spec`; rebuild: what the user does to get a good file."""
    try:
        value = storage.read_json(path)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise UserError(f"{path} is not readable JSON ({str(error).splitlines()[0]}); {rebuild}") from None
    return check(path, value, spec, rebuild)


# --- the search's state, checked as a whole ------------------------------------------------------------


def check_oracle_state(path, state, *, rounds, rebuild):
    """oracle.json's content (`state`) on its schema, and its round within the search's --rounds."""
    check(path, state, ORACLE_STATE, rebuild)
    kdas = state["kdas"]
    if kdas["round"] >= rounds or len(kdas["round_backbones"]) != kdas["round"] + 1:
        raise invalid(path, "kdas.round", kdas["round"], f"below --rounds={rounds}, with one backbone per round "
                      "so far in kdas.round_backbones", rebuild)


def check_search_files(project, oracle_path, rebuild, *, slot_names):
    """Every search/trial_N/trial.json and oracle.json on its schema, and each trial oracle.json names present.

    Called before KerasTuner reads them: it would take a reward of 1e999 or "0.9" as it stands.
    """
    spec = trial_spec(slot_names)
    trial_ids = set()
    for path in sorted(glob.glob(os.path.join(project, "trial_*", "trial.json"))):
        trial = read(path, spec, rebuild)
        if trial["status"] == trial_module.TrialStatus.COMPLETED and trial["score"] is None:
            raise invalid(path, "score", None, "a finite number in [0, 1] for a COMPLETED trial", rebuild)
        directory = os.path.basename(os.path.dirname(path))
        if directory != f"trial_{trial['trial_id']}":
            raise invalid(path, "trial_id", trial["trial_id"], f"the id of {directory}", rebuild)
        trial_ids.add(trial["trial_id"])
    state = read(oracle_path, ORACLE_STATE, rebuild)
    listed = {*state["start_order"], *state["end_order"], *state["retry_queue"], *state["ongoing_trials"].values()}
    missing = sorted(listed - trial_ids)
    if missing:
        raise UserError(f"{oracle_path} lists trial {missing[0]}, but {project}/trial_{missing[0]}/trial.json does "
                        f"not exist; {rebuild}")
