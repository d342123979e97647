"""The config on the command line: each section's fields defined as flags (define_flags), the parsed flags
read back into sections and a Config (section_from_flags, from_flags, from_args), and a Config written as
flags for the workers of a parallel search (to_flags). The one module of the config that reads absl's flags."""

import dataclasses
import typing

from absl import flags

from kdas_tf.config.options import flag_name
from kdas_tf.config.tree import SECTIONS, Config
from kdas_tf.errors import UserError

# The flags defined here belong to the entry point that asks for them, so its --help lists them.
flags.disclaim_key_flags()


def define_flags(*sections, flag_values=flags.FLAGS):
    """Define the flags of `sections` (names of SECTIONS, or other dataclasses of `option` fields)."""
    for section in sections:
        section = SECTIONS.get(section, section)
        for field in dataclasses.fields(section):
            _define(field, section, flag_values)


def _define(field, section, flag_values):
    name, help, default = flag_name(field), field.metadata["help"], field.default
    kind = _kind(section, field)
    if field.metadata["choices"]:
        flags.DEFINE_enum(name, default, list(field.metadata["choices"]), help, flag_values=flag_values)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help, flag_values=flag_values)
    elif kind is int:
        flags.DEFINE_integer(name, default, help, flag_values=flag_values)
    elif kind is float:
        flags.DEFINE_float(name, default, help, flag_values=flag_values)
    elif kind is tuple:
        flags.DEFINE_list(name, [str(v) for v in default], help, flag_values=flag_values)
    else:
        flags.DEFINE_string(name, default, help, flag_values=flag_values)


def _kind(section, field):
    """bool, int, float, str or tuple: the flag type of a field, from its annotation."""
    hint = typing.get_type_hints(section)[field.name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return tuple if typing.get_origin(hint) is tuple else hint


def _from_flag(section, field, value):
    if _kind(section, field) is not tuple:
        return value
    element = typing.get_args(typing.get_type_hints(section)[field.name])[0]
    try:
        return tuple(element(v) for v in value)
    except ValueError:
        raise UserError(f"--{flag_name(field)} takes a comma-separated list of {element.__name__}s "
                        f"(like {','.join(str(v) for v in field.default)}), got {','.join(value)}") from None


def section_from_flags(section, flag_values=flags.FLAGS):
    """The section (a name of SECTIONS, or a dataclass of `option` fields) from the flags, which must be defined."""
    section = SECTIONS.get(section, section)
    return section(**{f.name: _from_flag(section, f, flag_values[flag_name(f)].value)
                      for f in dataclasses.fields(section)})


def from_flags(flag_values=flags.FLAGS):
    """The Config the parsed flags describe; sections whose flags are not defined keep their defaults."""
    present = {name for name, section in SECTIONS.items()
               if all(flag_name(f) in flag_values for f in dataclasses.fields(section))}
    return Config(**{name: section_from_flags(name, flag_values) for name in SECTIONS if name in present})


def from_args(args, sections=tuple(SECTIONS)):
    """The Config that command-line `args` describe, e.g. ["--flagfile=flags/digits.cfg", "--workdir=runs/x"].

    Parsed with flag values of its own: the process's flags are neither read nor changed. Bad values give
    the same one-line UserError as the command lines.
    """
    flag_values = flags.FlagValues()
    define_flags(*sections, flag_values=flag_values)
    try:
        flag_values(["kdas_tf", *args])
    except flags.Error as error:
        raise UserError(" ".join(str(error).split())) from None
    return from_flags(flag_values)


def flag_argument(name, value):
    """Flag `name` set to `value` as a command line says it: --name / --noname, lists comma-separated."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no'}{name}"
    if isinstance(value, (tuple, list)):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value}"


def to_flags(config, names=tuple(SECTIONS)):
    """The named sections of `config` as command-line flags ('--name=value'), the inverse of from_flags."""
    arguments = []
    for name in names:
        section = getattr(config, name)
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if value is not None:  # unset: the flag's default is None too
                arguments.append(flag_argument(flag_name(field), value))
    return arguments
