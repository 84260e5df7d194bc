"""The converted modules' layout policy in one place: activations stay channels_last between our layers, an NCHW
map entering one is laid out once, and a map handed back to an NCHW caller goes back once (`to_nchw`). A dense
float32 CPU map takes the cpu extension's blocked transpose (ATen's copy runs far below memory speed on one
thread); so do RGB-like images of 1 to 4 channels to channels_last (16 pixels interleaved per step: 30 µs against
ATen's 88 for 3×224², Zen 4). Small maps (the call costs more), maps of 5 to 15 channels (ATen's copy was as fast or
faster than the 16×16 blocks), autograd and torch.compile take ATen's copy."""
import torch

from . import registry


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x.contiguous(memory_format=torch.channels_last)` for a 4-D map (other tensors as they are), faster for
    the common case of an ordinary NCHW image tensor on the CPU."""
    if x.dim() != 4 or x.is_contiguous(memory_format=torch.channels_last):
        return x
    if x.is_contiguous() and _transposable(x, few=True):
        return torch.ops.sft_cpu.to_channels_last(x)
    return x.contiguous(memory_format=torch.channels_last)


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """`x.contiguous()` for a 4-D map (other tensors as they are): a channels_last float32 CPU map, as our layers
    hand back to an NCHW caller, takes the same blocked transpose the other way (ATen's copy took 5.1 ms for 256
    channels at 56² on one Xeon core)."""
    if x.dim() != 4 or x.is_contiguous():
        return x
    if x.is_contiguous(memory_format=torch.channels_last) and _transposable(x):
        return torch.ops.sft_cpu.to_nchw(x)
    return x.contiguous()


def _transposable(x: torch.Tensor, few: bool = False) -> bool:
    """Whether a dense 4-D map takes the extension's blocked transpose (see the module docstring); with `few`, also
    maps of 1 to 4 channels (to channels_last only: interleaved 16 pixels at a time)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() >= 1 << 14
            and (x.shape[1] >= 16 or (few and x.shape[1] <= 4))
            and not (x.requires_grad and torch.is_grad_enabled()) and not torch.compiler.is_compiling()
            and registry.cpu_ext() is not None)
