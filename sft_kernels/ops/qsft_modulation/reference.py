import torch

from ..qconv2d import reference as qref


def qsft_modulation(x, mid_s, s_scale, s_zp, w_s, ws_s, b_s, mid_t, t_scale, t_zp, w_t, ws_t, b_t, out_scale,
                    out_zp) -> torch.Tensor:
    """quantize(x·(scale + 1) + shift, out_scale, out_zp), scale and shift the two int8 1×1 convs of the uint8 maps
    in float64 (exact integer sums), rounded to float32 as a float32 kernel's outputs are."""
    scale = qref.qconv2d(mid_s, s_scale, s_zp, w_s, ws_s, b_s).to(torch.float32)
    shift = qref.qconv2d(mid_t, t_scale, t_zp, w_t, ws_t, b_t).to(torch.float32)
    return qref.quantize(x.to(torch.float32) * (scale + 1) + shift, out_scale, out_zp)
