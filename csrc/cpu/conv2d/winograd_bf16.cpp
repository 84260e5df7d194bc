// Winograd F(4×4, 3×3) with bfloat16 multiplies (algorithm "bf16_winograd"): the float32 Winograd conv's transforms
// (winograd.cpp), with the transformed tiles V = Bᵀ d B and filters U = G g Gᵀ rounded to bfloat16 (nearest even)
// and their 36 position GEMMs run as the bf16 conv's blocks (amx_bf16.h: AMX tiles, or vdpbf16ps on AVX512-BF16
// vectors), float32 sums. On CPUs whose bf16 multiplies are vectors (AMD Zen 4) the direct bf16 conv does 9
// multiplies per output where Winograd does 2.25, at twice float32's rate; the rounding of V and U costs ~2-5× the
// direct bf16 conv's error (relative RMS ~1e-3 on SFTNet's maps; docs/PERF_NOTES.md).
//
// Per block of 32 tiles (one bf16 block of rows):
//   1. each tile's 6×6 patch → V (float32, winograd.cpp's bt_rows) → bf16 rows V16[tile][ξ][Cp]
//   2. per ξ and 32-output panel: M[ξ][panel][tile][32] = Σ_c V16 · U16 (the block's sums land
//      in place: the panel-major M is the blocks' own [32 rows][32] layout)
//   3. per tile, Aᵀ M A panel by panel into the tile's 16 outputs, then bias, activation, residual, PixelShuffle.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/conv2d/amx_bf16.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/conv2d/winograd.h"
#include "cpu/engine/config.h"
#include "cpu/engine/pack.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {
namespace {

constexpr int kA = 6, kA2 = 36, kM = 4;
using bf16::kCh;
using bf16::kNR;

// U = G g Gᵀ rounded to bf16, per ξ packed as the bf16 conv's 1×1 panels (bf16::pack_weight); r > 1: output
// channels in PixelShuffle(r)'s sub-pixel order (reordered before the transform). Cached per weight.
at::Tensor transformed_filter_bf16(const at::Tensor& weight_in, int64_t Cp, int64_t r) {
  return cached_weight_transform(weight_in, (int64_t(12) << 40) + Cp * 16 + r, [&](const at::Tensor& w_in) {
    const int64_t K = w_in.size(0), C = w_in.size(1);
    const at::Tensor w =
        (r > 1 ? w_in.view({K / (r * r), r * r, C, 3, 3}).transpose(0, 1).reshape({K, C, 3, 3}) : w_in).contiguous();
    at::Tensor U = at::empty({kA2, C, K}, w.options());  // U[ξ][c][k]
    wino::filter_transform(w.data_ptr<float>(), K, C, U.data_ptr<float>());
    std::vector<at::Tensor> panels;
    for (int64_t xi = 0; xi < kA2; ++xi)
      panels.push_back(bf16::pack_weight(U[xi].t().contiguous().view({K, C, 1, 1}), Cp, 1));
    return at::cat(panels);
  });
}

}  // namespace

void conv2d_winograd_bf16_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b_in,
                               at::IntArrayRef padding, int64_t activation, double slope, const at::Tensor& res,
                               at::Tensor& out, int64_t shuffle, const at::Tensor& mscale, const at::Tensor& mshift) {
  TORCH_CHECK(conv2d_bf16_available(), "sft_cpu::conv2d: algorithm='bf16_winograd' needs AMX-BF16 tiles or "
              "AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and later); use algorithm=None here");
  TORCH_CHECK(x.stride(1) == 1 && out.stride(1) == 1 && (!res.defined() || res.stride(1) == 1),
              "winograd: channels-last tensors expected");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = weight.size(0);
  const int64_t r = shuffle, Cs = K / (r * r), P = out.size(2) / r, Q = out.size(3) / r;
  const int64_t ph = padding[0], pw = padding[1];
  const int64_t Cp = round_up(C, kCh), chunks = Cp / kCh, panels = (K + kNR - 1) / kNR, Kp = panels * kNR;
  const int64_t th = (P + kM - 1) / kM, tw = (Q + kM - 1) / kM, T = N * th * tw;
  // 32 tiles per block (one bf16 block's rows): V16 and M of SFTNet's 64-channel convs ~0.4 MB, in L2; larger
  // blocks were slower (trunk conv at 2 threads: 64 tiles 1.71 ms, 32 tiles 1.28)
  constexpr int64_t tb = 32;

  const at::Tensor Up = transformed_filter_bf16(weight, Cp, r);
  const uint16_t* up = reinterpret_cast<const uint16_t*>(Up.data_ptr<int16_t>());
  at::Tensor bre = b_in;  // bias in the (sub-pixel, channel) order of the reordered filters
  if (b_in.defined() && r > 1) bre = b_in.view({Cs, r * r}).t().contiguous();
  const float* xp = x.data_ptr<float>();
  const float* msp = mscale.defined() ? mscale.data_ptr<float>() : nullptr;
  const float* mtp = mshift.defined() ? mshift.data_ptr<float>() : nullptr;
  const float* bp = bre.defined() ? bre.data_ptr<float>() : nullptr;
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const int64_t xs0 = x.stride(0), xs2 = x.stride(2), xs3 = x.stride(3);
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  const int act = static_cast<int>(activation);
  const float sl = static_cast<float>(slope);
  const int64_t toff0 = 0;

  at::parallel_for(0, (T + tb - 1) / tb, 1, [&](int64_t blk0, int64_t blk1) {
    // V16 [tile][ξ][Cp] bf16, M [ξ][panel][tile][32] float32 (64-byte aligned: the blocks store whole rows), and per
    // tile the 6×6 patch d, Bᵀ d, V in float32 and its 4×4 outputs y [16][K].
    at::Tensor v16_t = pooled_empty({tb * kA2 * Cp}, x.options().dtype(at::kShort));
    at::Tensor m_t = pooled_empty({kA2 * Kp * tb + 16}, x.options());
    at::Tensor s_t = pooled_empty({3 * kA2 * Cp + kM * kM * K + 16}, x.options());
    uint16_t* V16 = reinterpret_cast<uint16_t*>(v16_t.data_ptr<int16_t>());
    float* Mb = m_t.data_ptr<float>();
    Mb += (16 - (reinterpret_cast<uintptr_t>(Mb) / 4) % 16) % 16;
    float* d = s_t.data_ptr<float>();
    float* t = d + kA2 * Cp;
    float* v = t + kA2 * Cp;
    float* y = v + kA2 * Cp;
    bf16::begin_thread();
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t t0 = blk * tb, nt = std::min(tb, T - t0);
      // 1. input transforms, rounded to bf16 (tiles past nt: zeros, so the last block's rows stay finite)
      for (int64_t ti = 0; ti < tb; ++ti) {
        uint16_t* vt = V16 + ti * kA2 * Cp;
        if (ti >= nt) {
          std::memset(vt, 0, kA2 * Cp * sizeof(uint16_t));
          continue;
        }
        const int64_t tt = t0 + ti, n = tt / (th * tw), ty = tt / tw % th, tx = tt % tw;
        const int64_t ih0 = ty * kM - ph, iw0 = tx * kM - pw;
        if (!msp && C == Cp && ih0 >= 0 && ih0 + kA <= H && iw0 >= 0 && iw0 + kA <= W) {
          const float* src = xp + n * xs0 + ih0 * xs2 + iw0 * xs3;  // interior tile: the patch read in place
          for (int j = 0; j < kA; ++j) wino::bt_rows(src + j * xs3, xs2, t + j * Cp, kA * Cp, 8, Cp);
        } else {  // border tile (or modulated input, or channels to pad): gathered with zeros first
          wino::gather_patch(xp, msp, mtp, n * xs0, xs2, xs3, ih0, iw0, H, W, C, Cp, kA, d);
          for (int j = 0; j < kA; ++j) wino::bt_rows(d + j * Cp, kA * Cp, t + j * Cp, kA * Cp, 8, Cp);
        }
        for (int i = 0; i < kA; ++i) wino::bt_rows(t + i * kA * Cp, Cp, v + i * kA * Cp, Cp, 8, Cp);
        bf16::fill_pixels(v, Cp, nullptr, nullptr, kA2, Cp, Cp, vt);
      }
      // 2. the 36 position GEMMs, a panel's weights in L1 across the block's 32-tile blocks
      for (int64_t xi = 0; xi < kA2; ++xi)
        for (int64_t pn = 0; pn < panels; ++pn) {
          const uint16_t* u = up + (xi * panels + pn) * Cp * kNR;
          float* mp = Mb + (xi * panels + pn) * tb * kNR;
          const int nc = static_cast<int>(std::min<int64_t>(kNR, K - pn * kNR));
          // the block's nt rows (vectors compute only those: ResNet-50's 7² maps have 4 tiles)
          bf16::block_for(nc, V16 + xi * Cp, kA2 * Cp * 2, &toff0, 1, chunks, u, mp, static_cast<int>(nt));
        }
      // 3. output transforms and the epilogue
      for (int64_t ti = 0; ti < nt; ++ti) {
        const int64_t tt = t0 + ti, n = tt / (th * tw), ty = tt / tw % th, tx = tt % tw;
        for (int64_t pn = 0; pn < panels; ++pn)  // M[ξ = 6i + j][pn] of tile ti at ((ξ·panels + pn)·tb + ti)·32
          wino::at_tile_to(Mb + (pn * tb + ti) * kNR, kA * panels * tb * kNR, panels * tb * kNR, y + pn * kNR, K,
                           std::min<int64_t>(kNR, K - pn * kNR));
        for (int i = 0; i < kM && ty * kM + i < P; ++i) {
          const int64_t oh = ty * kM + i;
          for (int j = 0; j < kM && tx * kM + j < Q; ++j) {
            const int64_t ow = tx * kM + j;
            for (int64_t sub = 0; sub < r * r; ++sub) {  // r = 1: the whole K-vector at (oh, ow)
              const int64_t yh = oh * r + sub / r, yw = ow * r + sub % r;
              wino::finish_row(op + n * os0 + yh * os2 + yw * os3, y + (i * kM + j) * K + sub * Cs,
                               bp ? bp + sub * Cs : nullptr, rp ? rp + n * rs0 + yh * rs2 + yw * rs3 : nullptr, Cs,
                               act, sl);
            }
          }
        }
      }
    }
    bf16::end_thread();
  });
}

}  // namespace sft
