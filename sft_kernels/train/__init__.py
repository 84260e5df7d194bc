"""Training SFTNet (loop.py: the resumable training loop, patch sampling, EMA, evaluation), distillation into smaller
students (distill.py) and exporting a finished run as shipped weights with a model card (export.py)."""
from .loop import TrainConfig, evaluate, forward_features, train

__all__ = ["TrainConfig", "train", "evaluate", "forward_features"]
