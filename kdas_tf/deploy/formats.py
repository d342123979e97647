"""The export formats a user may ask for, free of TensorFlow: kdas_tf.config checks --formats (and --help
answers) without importing it. kdas_tf.deploy.litert writes them."""

from kdas_tf.errors import UserError

FORMATS = ("saved_model", "tflite", "tflite_int8")


def check_formats(formats):
    """The --formats value as a tuple; an unknown or repeated name is refused."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats or len(set(formats)) != len(formats):
        raise UserError(f"--formats={','.join(formats)}: give one or more of {', '.join(FORMATS)}, each once")
    return tuple(formats)
