"""A config field and its command-line flag in one place: `option(...)` declares both, so a section's fields are
its flags' names, help and choices, and whether each is a setting a rerun must keep (see Config.settings).

A work directory's settings.json is every field of every section except those marked `setting=False`, each
with the reason a rerun may change it beside it. A new field is a setting unless it says why not.
"""

import dataclasses

from kdas_tf.errors import UserError


def option(default, help, *, flag=None, choices=None, setting=True, unrecorded=None):
    """A config field with its flag: `flag` (default: the field's name), help text, enum choices.

    setting=False: a rerun of the same work directory may change it (say why beside it).
    unrecorded: the value a setting added later had in work directories made before it (their settings.json
    lacks it); a rerun with another value is refused like any changed setting. None: they take the rerun's.
    """
    metadata = {"flag": flag, "help": help, "choices": choices, "setting": setting, "unrecorded": unrecorded}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field):
    return field.metadata["flag"] or field.name


def at_least_one(section, *names):
    """Refuses a count below 1 among the fields `names` of `section`, naming its flag."""
    for name in names:
        value = getattr(section, name)
        if value < 1:
            raise UserError(f"--{flag_name(_field(section, name))} must be at least 1, got {value}")


def _field(section, name):
    return next(f for f in dataclasses.fields(section) if f.name == name)
