// Which algorithm runs a CPU conv: what each path can take and where it pays, in one place. Winograd first (when
// it applies and pays, or on request), else the first direct path that takes the conv: stacked rows, thin, taps,
// and implicit GEMM, which takes any; depthwise convs go to their own path.
#include "cpu/conv2d/select.h"

#include <algorithm>
#include <cstring>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/ukernel.h"

namespace sft {
namespace {

// Dilated convs too: they run as dilation² undilated convs on sub-grids (winograd.cpp).
bool winograd_applicable(int64_t R, int64_t S, at::IntArrayRef stride, int64_t groups) {
  return R == 3 && S == 3 && stride[0] == 1 && stride[1] == 1 && groups == 1;
}

// Rows path (rows.cpp), few input channels. C ≤ 4: beat the thin few-input kernel (conv0 3→64 at 128², 1 thread:
// 90-100 -> 101-103 GFLOP/s). Strided convs on up to 16 channels (SFTNet's 8→128 4×4 stride-4 cond_in): on par
// or slightly ahead of packing im2col rows (0.73-0.77x -> 0.75-0.80x oneDNN, three alternating runs). Stride-1
// convs on 8 or 16 channels keep the taps path, which reads the input in place without the stacking copy.
bool rows_ok(int64_t C, int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups,
             const at::Tensor& res, const at::Tensor& out) {
  const bool few = C <= 4 || (C <= 16 && (stride[0] > 1 || stride[1] > 1));
  return ukernel().fn_strided && groups == 1 && few && R * S * C <= 1024 && dilation[1] == 1 &&
         out.stride(1) == 1 && (!res.defined() || res.stride(1) == 1);
}

// Thin path (thin.cpp, AVX-512 only): few output channels, or few input channels. Also 1×1 convs on fewer than
// 64 channels to fewer than 256, unless the GEMM can read their input rows in place (C a multiple of 8): since
// its strided kernel prefetches the next rows and stores plain tiles directly, it is the faster of the two there
// (side by side, 1 thread: 32→32 69 -> 93 GFLOP/s, 32→64 91 -> 104, 16→128 78 -> 81, 48→96 115 -> 122), while
// for C = 12 the thin kernel stays ahead (61 vs 35 GFLOP/s).
bool thin_ok(int64_t C, int64_t K, int64_t R, int64_t S, int64_t groups) {
  if (groups != 1 || std::strcmp(ukernel().isa, "avx512") != 0) return false;
  return (K <= 4 && C % 16 == 0) || ((C <= 4 || (R * S == 1 && C % KU != 0 && C < 64 && K < 256)) && K % 16 == 0);
}

// Taps path (taps.cpp): each tile runs the whole depth R·S·C against every output-channel panel, so all the
// weights stream past each 14-pixel tile; the implicit-GEMM path blocks K instead and reads each KC-deep block
// once per row block. Up to here (128→128 3×3: 576 KB) the weights stay in L2 and the taps path wins or ties;
// beyond, implicit GEMM measured 1.05x / 1.32x / 1.46x oneDNN against 0.75x / 0.85x / 0.72x for 256→256 @14²,
// 512→512 @14², @7².
constexpr int64_t kTapsMaxWeightBytes = int64_t(1) << 20;

bool taps_ok(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef dilation,
             int64_t groups, const at::Tensor& res, const at::Tensor& out) {
  const UKernel& uk = ukernel();
  const int64_t C = x.size(1), K = weight.size(0), R = weight.size(2), S = weight.size(3);
  const auto dense_cl = [](const at::Tensor& t) {
    return t.stride(1) == 1 && t.stride(3) == t.size(1) && t.stride(2) == t.size(3) * t.stride(3) &&
           (t.size(0) == 1 || t.stride(0) == t.size(2) * t.stride(2));
  };
  return uk.fn_taps && groups == 1 && stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 &&
         R * S > 1 && C % KU == 0 && K >= 1 && R * S * C * K * int64_t(sizeof(float)) <= kTapsMaxWeightBytes &&
         dense_cl(out) && (!res.defined() || dense_cl(res));
}

}  // namespace

int64_t winograd_tile(int64_t algorithm, int64_t N, int64_t C, int64_t K, int64_t R, int64_t S, int64_t P,
                      int64_t Q, at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups) {
  const bool can_wino = winograd_applicable(R, S, stride, groups);
  const bool asked = algorithm == 2 || algorithm == 3;
  TORCH_CHECK(!asked || can_wino, "sft_cpu::conv2d: algorithm='winograd' / 'winograd_f2' needs a 3x3 kernel "
              "with stride 1 and groups 1; use algorithm='direct' or None");
  // Winograd F(4×4,3×3) holds 36 transformed values per filter (direct: 9) and each of its 36 GEMMs has one row
  // per 4×4 output tile, so on small images its filters are read for a few rows only: auto takes it where the
  // batch has at least 9 tiles and under 1 MB of transformed filters per tile. Measured against direct
  // (interleaved, 1 / 2 threads): 7×7 images (4 tiles) 1.17-2.86x slower at 64-512 channels, 512→512 at 14×14
  // 1.34-1.46x slower; 128→128 at 14×14 and 512→512 at 28×28 0.76-0.97x the time; SFTNet's layers (1024+
  // tiles) 0.4-0.5x.
  // A dilated conv's sub-grids (winograd.cpp) run in one pass: their tiles count together.
  const auto tiles_along = [](int64_t P, int64_t d) {
    int64_t t = 0;
    for (int64_t i = 0; i < std::min(P, d); ++i) t += (sub_grid_size(P, i, d) + 3) / 4;
    return t;
  };
  const int64_t wino_tiles = N * tiles_along(P, dilation[0]) * tiles_along(Q, dilation[1]);
  // Sub-grids of 1-3 rows fill a 4×4 tile with padding: DeepLab's ASPP on 32² maps (1 thread) ran Winograd
  // 1.28x faster than direct at rate 12 (2.25x the outputs computed), 3x slower at rate 24 (9x); so at most 2.5x.
  const bool wino_pays = wino_tiles >= 9 && 36 * C * K * int64_t(sizeof(float)) < wino_tiles * (int64_t(1) << 20) &&
                         32 * wino_tiles <= 5 * N * P * Q;
  const bool wino = asked || (algorithm == 0 && can_wino && C >= 16 && K >= 16 && wino_pays);
  if (algorithm == 3) return 2;  // F(2×2,3×3) on request
  if (algorithm == 2) return 4;
  if (algorithm != 0 || !can_wino || C < 16 || K < 16) return 0;
  // F(2×2,3×3) where its GEMMs fill the 14-row micro-kernel tiles better than F(4×4)'s (each Winograd position
  // is a GEMM with one row per tile): cost ∝ positions × rows padded to whole tiles, 16·⌈T₂⌉ against 36·⌈T₄⌉
  // (direct: 9 × pixels). A 14×14 map has 16 F(4×4) tiles (28 rows of work, 12 of them padding) and 49 F(2×2)
  // ones. Measured (Zen 4, interleaved, channels_last, C = K): at 14² F(2×2) 1.08-1.25x F(4×4) at 64-512
  // channels and 1 or 2 threads, 512→512 1.37x the direct conv F(4×4) had left it to (its filters past the 1 MB
  // per tile rule); at 20², 24², 28² and batches of 4+ 14² maps F(4×4) stays ahead (0.62-0.92x).
  const auto padded = [](int64_t rows) { return (rows + 13) / 14 * 14; };
  const int64_t f2_tiles = N * ((P + 1) / 2) * ((Q + 1) / 2);
  const bool f2_ok = dilation[0] == 1 && dilation[1] == 1 && f2_tiles >= 9 &&
                     16 * C * K * int64_t(sizeof(float)) < f2_tiles * (int64_t(1) << 20);
  const int64_t cost2 = 16 * padded(f2_tiles);
  if (wino) return f2_ok && cost2 < 36 * padded(wino_tiles) ? 2 : 4;
  // Where F(4×4) does not run: F(2×2) only where it clearly beats the direct conv (7² maps tie or lose).
  return f2_ok && 100 * cost2 <= 85 * 9 * padded(N * P * Q) ? 2 : 0;
}

ConvPath direct_conv_path(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef dilation, int64_t groups, bool modulated, const at::Tensor& res,
                          const at::Tensor& out) {
  const int64_t C = x.size(1), K = weight.size(0), R = weight.size(2), S = weight.size(3);
  // Depthwise (groups = C > 1): the implicit GEMM would run C one-column GEMMs of depth R·S (64-channel 3×3 at
  // 64²: 55 ms against 1 ms for oneDNN); the depthwise path vectorizes over channels instead.
  if (!modulated && groups == C && C > 1 && out.stride(1) == 1 && (!res.defined() || res.stride(1) == 1))
    return ConvPath::kDepthwise;
  // Few channels per group (ResNeXt, RegNet): one GEMM per group would have 4-16 columns; vectors over groups instead.
  if (!modulated && grouped_fits(C, K, groups) && out.stride(1) == 1 && (!res.defined() || res.stride(1) == 1))
    return ConvPath::kGrouped;
  if (!modulated && rows_ok(C, R, S, stride, dilation, groups, res, out)) return ConvPath::kRows;
  if (!modulated && thin_ok(C, K, R, S, groups)) return ConvPath::kThin;
  if (taps_ok(x, weight, stride, dilation, groups, res, out)) return ConvPath::kTaps;
  return ConvPath::kImplicitGemm;
}

std::string conv2d_direct_path(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                               at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(x.dim() == 4 && weight.dim() == 4, "sft_cpu::conv2d_direct_path: 4-D input and weight");
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor out = at::empty({x.size(0), weight.size(0), 1, 1}, x.options(), at::MemoryFormat::ChannelsLast);
  switch (direct_conv_path(xc, weight, stride, dilation, groups, false, at::Tensor(), out)) {
    case ConvPath::kTaps: return "taps";
    case ConvPath::kRows: return "rows";
    case ConvPath::kThin: return "thin";
    case ConvPath::kDepthwise: return "depthwise";
    case ConvPath::kGrouped: return "grouped";
    default: return "implicit_gemm";
  }
}

}  // namespace sft
