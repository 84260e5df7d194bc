// sft_cpu::sparse_conv2d: an fp32 conv whose time falls with the weights kept. The weight's nonzeros are packed
// once (sparse_conv2d_pack); each call runs only those, y = act(conv(x·(scale + 1) + shift, w) + bias) + residual.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace sft {

// Packs a conv weight (K, C/groups, R, S) float32 for sparse_conv2d_cpu: its nonzeros, grouped in blocks of
// `block` output channels (1: unstructured; 4: the kernel's output-channel block, for weights pruned in blocks of
// 4 along K; 0: 4 where the weight's zeros are shared by aligned groups of 4 channels, else 1). One int32 tensor.
at::Tensor sparse_conv2d_pack(const at::Tensor& weight, int64_t groups, int64_t block);

// x (N, C, H, W) float32 (any strides; NCHW and channels-last are read without a copy), packed from
// sparse_conv2d_pack; bias (K); residual shaped like the output. activation: 0 none, 1 relu, 2 leaky relu.
// scale and shift (together or neither, shaped like x) modulate the input. The output is channels-last iff the
// input is (F.conv2d's rule). shuffle = r > 1 stores PixelShuffle(r) of the activated conv (N × K/r² × P·r × Q·r),
// the residual added after it; the packed weight's and the bias's output channels are then in sub-pixel-major
// order, k = (i·r + j)·K/r² + c for PixelShuffle's channel c·r² + i·r + j.
at::Tensor sparse_conv2d_cpu(const at::Tensor& input, const at::Tensor& packed, const c10::optional<at::Tensor>& bias,
                             int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t activation, double negative_slope,
                             const c10::optional<at::Tensor>& residual, const c10::optional<at::Tensor>& scale,
                             const c10::optional<at::Tensor>& shift, int64_t shuffle);

// The kernel set this process runs ("avx512", "avx2" or "generic"); a non-empty `want` switches to it first
// (an error if this CPU cannot run it). SFT_KERNELS_SPARSE sets the initial choice.
std::string sparse_conv2d_kernel(const std::string& want);

// (nonzeros, blocks of the packed weight's block size that hold them, that block size) of a packed weight.
std::vector<int64_t> sparse_conv2d_info(const at::Tensor& packed);

}  // namespace sft
