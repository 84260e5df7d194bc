// Direct stride-1 convs that read A in place from zero-padded bands of the input instead of packing im2col
// rows (packing was ~16 % of the implicit-GEMM path on SFTNet's 3×3 convs).
//
// In the padded input (rows of Wp = W + 2·pw pixels, C floats each) give output pixel (p, q) the virtual index
// m = p·Wp + q. Its tap (r, s) reads padded pixel m + r·Wp + s: for every tap the A rows of
// consecutive m are consecutive pixels, a row-major matrix with row pitch C at a constant offset. One
// micro-kernel call (ukr_*_taps) runs a 14-row tile through all R·S taps with the accumulators in registers.
// Virtual columns q ≥ Q (2·pw per row, 1.6 % of a 128-wide image with pw = 1) are computed and dropped.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/gemm.h"

namespace sft {

// out = act(conv(x·(scale + 1) + shift, w) + b) + res; what it takes: taps_ok in select.cpp.
void conv2d_taps_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef padding,
                      int64_t activation, double slope, const at::Tensor& res, at::Tensor& out,
                      const at::Tensor& mscale, const at::Tensor& mshift) {
  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t K = weight.size(0), R = weight.size(2), S = weight.size(3);
  const int64_t ph = padding[0], pw = padding[1], Wp = W + 2 * pw;
  const int64_t P = out.size(2), Q = out.size(3), KK = R * S * C, Kpad = round_up(KK, KU);

  // B: the weights as [K/NR][Kpad][NR] panels with k = (r, s, c), as the implicit-GEMM path packs them.
  const at::Tensor bp = conv_weight_panels(weight, 1, uk);
  std::vector<int64_t> toff(R * S);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s) toff[r * S + s] = (r * Wp + s) * C * int64_t(sizeof(float));

  // Work comes in bands of output rows. A thread copies the band's input rows (plus R - 1 halo rows) into a
  // zero-padded buffer sized for L2, modulating them on the way when asked, then runs the band's tiles from
  // it: the input crosses DRAM once (a whole padded copy first, then read back, cost hr@512 two extra passes
  // over 64 MB). Bands are small enough that every thread gets several.
  const int64_t row_bytes = Wp * C * int64_t(sizeof(float));
  const int64_t threads = at::get_num_threads();
  // A band also spans at least kTapsBandMinTiles tiles of virtual rows where the image allows (config.h).
  const int64_t band = std::max<int64_t>(
      {int64_t(1), std::min<int64_t>(kTapsBandBytes / row_bytes - (R - 1), (N * P + 8 * threads - 1) / (8 * threads)),
       std::min<int64_t>(P, (kTapsBandMinTiles * MR + Wp - 1) / Wp)});
  const int64_t bands_per_img = (P + band - 1) / band, bands = N * bands_per_img;
  // Too few bands to keep every thread busy: the output channels are split between threads as well (each work
  // item copies its band; a thread given consecutive items of one band copies it once).
  const int64_t panels = (K + NR - 1) / NR;
  const int64_t jgroups = bands >= 2 * threads ? 1 : std::min(panels, (2 * threads + bands - 1) / bands);
  // A tile's last rows may read up to MR + S pixels past the band's rows (virtual rows never stored): slack.
  const int64_t buf_floats = (band + R - 1) * Wp * C + (MR + S) * C;

  const float* xp = x.data_ptr<float>();
  const float* msp = mscale.defined() ? mscale.data_ptr<float>() : nullptr;
  const float* mtp = mshift.defined() ? mshift.data_ptr<float>() : nullptr;
  const int64_t xs0 = x.stride(0), xs2 = x.stride(2), xs3 = x.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const ConvOut co{out.data_ptr<float>(), rp, b.defined() ? b.data_ptr<float>() : nullptr, static_cast<int>(activation),
                   static_cast<float>(slope)};
  at::parallel_for(0, bands * jgroups, 1, [&](int64_t w0, int64_t w1) {
    thread_local std::vector<float> buf_store;
    buf_store.resize(static_cast<size_t>(buf_floats) + 16);
    float* buf = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf_store.data()) + 63) & ~uintptr_t(63));
    alignas(64) float tile[kMaxMR * kMaxNR];
    for (int64_t wi = w0; wi < w1; ++wi) {
      const int64_t bi = wi / jgroups, jg = wi % jgroups;
      const int64_t j_lo = jg * panels / jgroups * NR, j_hi = std::min(K, (jg + 1) * panels / jgroups * NR);
      const int64_t n = bi / bands_per_img, p0 = bi % bands_per_img * band, p1 = std::min(P, p0 + band);
      const int64_t rows = p1 - p0 + R - 1;
      const bool copy_band = wi == w0 || jg == 0;  // else the buffer already holds this band
      // Padded rows [p0, p0 + rows) hold input rows p0 - ph, ...: zero outside the image and in the side pads.
      for (int64_t r = 0; r < rows && copy_band; ++r) {
        float* d = buf + r * Wp * C;
        const int64_t h = p0 + r - ph;
        if (h < 0 || h >= H) {
          std::memset(d, 0, row_bytes);
          continue;
        }
        std::memset(d, 0, pw * C * sizeof(float));
        std::memset(d + (pw + W) * C, 0, pw * C * sizeof(float));
        const int64_t run = xs3 == C ? W * C : C;  // one run per row when pixels are dense
        for (int64_t w = 0; w < W; w += run / C) {
          const int64_t off = n * xs0 + h * xs2 + w * xs3;
          float* dp = d + (pw + w) * C;
          if (msp)
            modulate_run(dp, xp + off, msp + off, mtp + off, run);
          else
            std::memcpy(dp, xp + off, run * sizeof(float));
        }
      }
      if (copy_band) std::memset(buf + rows * Wp * C, 0, (MR + S) * C * sizeof(float));

      const int64_t mv = (p1 - p0) * Wp;  // the band's virtual rows
      for (int64_t m0 = 0; m0 < mv; m0 += MR)
        for (int64_t j = j_lo; j < j_hi; j += NR) {
          // A tile within one output row, clear of the virtual columns, is stored by the kernel from registers
          // when it can (whole, no residual); the others come back raw.
          const int64_t q0 = m0 % Wp, pix0 = (n * P + p0 + m0 / Wp) * Q + q0;
          KOut whole = co.tile(pix0 * K + j, K, pix0 * K + j, K, j, MR, static_cast<int>(std::min<int64_t>(NR, K - j)));
          whole.prefetch = true;  // C·R·S k-steps (576 on the trunk) hide the C misses: +2-3 % at 1 thread
          const bool in_row = q0 + MR <= Q && m0 + MR <= mv;
          if (uk.fn_taps(C / KU, 0, R * S, toff.data(), buf + m0 * C, C, bp.data_ptr<float>() + j / NR * Kpad * NR,
                         tile, static_cast<int>(std::min<int64_t>(MR, mv - m0)), in_row ? &whole : nullptr))
            continue;
          // Store the tile's rows in runs that stay in one output row, skipping the virtual columns q >= Q.
          for (int i = 0; i < MR && m0 + i < mv;) {
            const int64_t m = m0 + i, p = p0 + m / Wp, q = m % Wp;
            if (q >= Q) {
              i += static_cast<int>(std::min<int64_t>(Wp - q, MR - i));
              continue;
            }
            const int len = static_cast<int>(std::min<int64_t>({Q - q, MR - i, mv - m}));
            const int64_t pix = (n * P + p) * Q + q;
            const KOut ko =
                co.tile(pix * K + j, K, pix * K + j, K, j, len, static_cast<int>(std::min<int64_t>(NR, K - j)));
            uk.epilogue(tile + i * NR, ko);
            i += len;
          }
        }
    }
  });
}

}  // namespace sft
