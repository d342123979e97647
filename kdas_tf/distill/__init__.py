"""Distillation: the paper's losses, the teacher ensemble, the targets a step distils from, the training loop, final rows."""
