"""kdas_tf: oracle knowledge distillation with neural architecture search (Kang et al., AAAI 2020)."""

__version__ = "0.1.0"


def __getattr__(name):
    """kdas_tf.load_search, imported on first use: `import kdas_tf` stays free of TensorFlow."""
    if name == "load_search":
        from kdas_tf.recorded import load_search

        return load_search
    raise AttributeError(f"module 'kdas_tf' has no attribute {name!r}")
