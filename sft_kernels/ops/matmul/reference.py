import torch


def matmul(a, b):
    """torch.matmul semantics (broadcast batch dims, 1-D operands promoted and squeezed)."""
    return torch.matmul(a, b)
