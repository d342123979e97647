"""kdas_tf: oracle knowledge distillation with neural architecture search (Kang et al., AAAI 2020)."""

__version__ = "0.1.0"
