import torch

from ..qconv2d import reference as qref
from ..qsft_modulation import reference as mref


def qsft_layer(x, cond, c_input, first_s, first_t, second_s, second_t, s_input, t_input, activation, negative_slope,
               out_scale, out_zp) -> torch.Tensor:
    """The two first convs in float64 from exact integer sums, requantized to uint8 for the second convs, then
    qsft_modulation's reference. first_* / second_*: (int8 weight, per-channel scales, bias or None)."""
    mids = [qref.qconv2d(cond, *c_input, *conv, activation=activation, negative_slope=negative_slope,
                         out_scale=inp[0], out_zero_point=inp[1])
            for conv, inp in ((first_s, s_input), (first_t, t_input))]
    return mref.qsft_modulation(x, mids[0], *s_input, *second_s, mids[1], *t_input, *second_t, out_scale, out_zp)
