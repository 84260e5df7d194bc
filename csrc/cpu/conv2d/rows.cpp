// Direct conv for few input channels (an RGB first conv, a strided conv on a few maps), as GEMM tiles read in
// place from stacked rows.
//
// For output row p, the R input rows it reads are stacked column by column into a small buffer Z: column j holds
// x[p·sh − ph + r·dh][j − pw][c] for r < R, c < C (R·C floats; zero outside the image). Output pixel q's whole
// receptive field is then one contiguous run of S·R·C floats starting at column q·sw, so the 14×32 strided
// kernel reads it as an A row (lda = sw·R·C, k = (s, r, c)) with no im2col copy, while a GEMM tile keeps its
// 28 accumulators in registers. The thin few-input kernel (thin.cpp) broadcast each input value to 6
// pixels × 4 vectors and had its store go through memory; this one does 14 × 2 per broadcast pair of B loads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/gemm.h"

namespace sft {

namespace {

// Z for output row p of image n (see the top of the file): cols columns of R·C floats. Each pixel's C ≤ 16
// channels move as one masked load and store (a scalar loop per channel took 12 % of the conv).
__attribute__((target("avx512f,avx512vl"))) void stack_rows(const at::Tensor& x, int64_t n, int64_t p, int64_t sh,
                                                            int64_t ph, int64_t dh, int64_t R, int64_t pw,
                                                            int64_t cols, float* z) {
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3), RC = R * C;
  const float* xp = x.data_ptr<float>() + n * x.stride(0);
  const int64_t xs2 = x.stride(2), xs3 = x.stride(3);  // unit channel stride (conv2d_cpu repacks NCHW input)
  const int64_t ih0 = p * sh - ph, j0 = std::min(cols, pw), j1 = std::min(cols, W + pw);
  if (ih0 < 0 || ih0 + (R - 1) * dh >= H) std::memset(z, 0, cols * RC * sizeof(float));  // rows off the image
  std::memset(z, 0, j0 * RC * sizeof(float));
  std::memset(z + j1 * RC, 0, (cols - j1) * RC * sizeof(float));
  const __mmask16 m = static_cast<__mmask16>((1u << C) - 1u);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t ih = ih0 + r * dh;
    if (ih < 0 || ih >= H) continue;
    const float* s = xp + ih * xs2 + (j0 - pw) * xs3;
    float* d = z + j0 * RC + r * C;
    for (int64_t j = j0; j < j1; ++j, s += xs3, d += RC) _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
  }
}

// d[w·ld + h·C + c] = x[h][w][c] (pitches xs2, xs3; unit channel stride) for rows [h0, h1), C ≤ 4: row by row,
// so the loads run along each input row and the stores, one pixel apiece, go to the W lines of the rows' columns,
// which stay in L1 from one row to the next (reading down each column had missed L1 on every pixel: 40 % of an
// RGB stem conv).
__attribute__((target("avx512f,avx512vl"))) void transpose_pixels(const float* x, int64_t xs2, int64_t xs3,
                                                                  int64_t C, int64_t h0, int64_t h1, int64_t W,
                                                                  float* d, int64_t ld) {
  const __mmask8 m = static_cast<__mmask8>((1u << C) - 1u);
  for (int64_t h = h0; h < h1; ++h) {
    const float* s = x + h * xs2;
    float* o = d + h * C;
    for (int64_t w = 0; w < W; ++w) _mm_mask_storeu_ps(o + w * ld, m, _mm_maskz_loadu_ps(m, s + w * xs3));
  }
}

// RGB-like convs (C ≤ 4, undilated rows) by output columns: per image, the zero-padded input transposed to
// column-major pixels, T[jj][hh][c] for padded column jj < Wp and row hh < Hp. Pixel p of output column q then
// reads, per kernel column s, the R·C contiguous floats at T[q·sw + s·dw][p·sh], and pixel p + 1 the run sh·C
// floats on: a tile of 14 pixels down a column runs the S kernel columns as taps (R·C k-steps each; 27 for an
// RGB 3×3 conv: 3 blocks of 8 and 3 single steps). T is built once per image; stacking copied every input
// row R times (11 % of conv0). Tiles go band by band, each band's 14 output rows filled left to right over
// the thread's columns.
void conv2d_columns(const at::Tensor& x, const at::Tensor& bp, const at::Tensor& b, at::IntArrayRef stride,
                    at::IntArrayRef padding, int64_t dw, int64_t R, int64_t S, int64_t activation, double slope,
                    const at::Tensor& res, at::Tensor& out) {
  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = out.size(1);
  const int64_t P = out.size(2), Q = out.size(3), sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1];
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw, RC = R * C, Kpad = round_up(S * RC, KU);
  std::vector<int64_t> toff(S);
  for (int64_t s = 0; s < S; ++s) toff[s] = s * dw * Hp * C * int64_t(sizeof(float));
  const at::Tensor t = at::empty({Wp * Hp * C}, x.options());
  float* tp = t.data_ptr<float>();
  const float* bpp = bp.data_ptr<float>();
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  const ConvOut co{out.data_ptr<float>(), rp, b.defined() ? b.data_ptr<float>() : nullptr, static_cast<int>(activation),
                   static_cast<float>(slope)};
  const int64_t xs0 = x.stride(0), xs2 = x.stride(2), xs3 = x.stride(3);
  for (int64_t n = 0; n < N; ++n) {
    const float* xp = x.data_ptr<float>() + n * xs0;
    at::parallel_for(0, Wp, 16, [&](int64_t j0, int64_t j1) {  // the padding
      for (int64_t jj = j0; jj < j1; ++jj) {
        float* d = tp + jj * Hp * C;
        const int64_t w = jj - pw;
        if (w < 0 || w >= W) {
          std::memset(d, 0, Hp * C * sizeof(float));
          continue;
        }
        std::memset(d, 0, ph * C * sizeof(float));
        std::memset(d + (ph + H) * C, 0, ph * C * sizeof(float));
      }
    });
    at::parallel_for(0, H, 8, [&](int64_t h0, int64_t h1) {  // the image, row by row
      transpose_pixels(xp, xs2, xs3, C, h0, h1, W, tp + (pw * Hp + ph) * C, Hp * C);
    });
    // Threads split the columns (every column costs the same; 128 rows are 9 whole bands and a 2-row one).
    at::parallel_for(0, Q, 8, [&](int64_t qa, int64_t qb) {
      alignas(64) float tile[kAvx512MR * kAvx512NR];
      for (int64_t p0 = 0; p0 < P; p0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, P - p0));
        for (int64_t q = qa; q < qb; ++q)
          for (int64_t j = 0; j < K; j += NR) {
            const KOut ko = co.tile(n * os0 + p0 * os2 + q * os3 + j, os2, n * rs0 + p0 * rs2 + q * rs3 + j, rs2, j,
                                    rows, static_cast<int>(std::min<int64_t>(NR, K - j)));
            if (!uk.fn_taps(RC / KU, RC % KU, S, toff.data(), tp + (q * sw * Hp + p0 * sh) * C, sh * C,
                            bpp + j / NR * Kpad * NR, tile, rows, &ko))
              uk.epilogue(tile, ko);
          }
      }
    });
  }
}

}  // namespace

// out = act(conv(x, w) + b) + res; what it takes: rows_ok in select.cpp. Only the AVX-512 kernels have the strided
// and taps kernels it runs on, so its stack tiles are theirs.
void conv2d_rows_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out) {
  TORCH_CHECK(x.stride(1) == 1, "sft_cpu::conv2d: internal: the rows path needs unit channel stride");
  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t K = weight.size(0), R = weight.size(2), S = weight.size(3);
  const int64_t P = out.size(2), Q = out.size(3);
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0];
  const int64_t RC = R * C, KK = S * RC, Kpad = round_up(KK, KU);

  // Without padding, on dense pixels, with S·C a multiple of 8 (SFTNet's 8→128 4×4 stride-4 cond_in), the input
  // is read in place: tap r of pixel q is the S·C floats at row p·sh + r·dh, column q·sw, so the taps kernel
  // runs the R rows as taps with lda = sw·C and no Z (stacking had been 13 % of cond_in).
  const bool in_place = uk.fn_taps && ph == 0 && pw == 0 && x.stride(3) == C && S * C % KU == 0;
  // B: the weights as [K/NR][Kpad][NR] panels with k = (s, r, c), the order of a Z run, or (r, s, c) in place.
  const at::Tensor bp = conv_weight_panels(weight, 1, uk, /*s_outer=*/!in_place);
  if (!in_place && uk.fn_taps && C <= 4 && dh == 1)
    return conv2d_columns(x, bp, b, stride, padding, dilation[1], R, S, activation, slope, res, out);
  const float* bpp = bp.data_ptr<float>();
  std::vector<int64_t> toff(R);
  for (int64_t r = 0; r < R; ++r) toff[r] = r * dh * x.stride(2) * int64_t(sizeof(float));

  // Z spans every column a tile reads (a row's last tile reads only its own rows); the kernel also prefetches
  // the next tile's rows, which may point past Z harmlessly.
  const int64_t cols = (Q - 1) * sw + S;
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  const ConvOut co{out.data_ptr<float>(), rp, b.defined() ? b.data_ptr<float>() : nullptr, static_cast<int>(activation),
                   static_cast<float>(slope)};
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> z_store;
    if (!in_place) z_store.resize(static_cast<size_t>(cols * RC) + 16);
    float* z = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(z_store.data()) + 63) & ~uintptr_t(63));
    alignas(64) float tile[kAvx512MR * kAvx512NR];
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / P, p = row % P;
      const float* xrow = x.data_ptr<float>() + n * x.stride(0) + p * sh * x.stride(2);
      if (!in_place) stack_rows(x, n, p, sh, ph, dh, R, pw, cols, z);
      // Panel by panel: a B panel (KK × 32 floats, 16 KB for a 4×4×8 kernel) stays in L1 while the row's A tiles
      // come from Z (or the input rows) in L2; the other order streamed every panel in again per tile.
      for (int64_t j = 0; j < K; j += NR)
        for (int64_t q0 = 0; q0 < Q; q0 += MR) {
          const int rows = static_cast<int>(std::min<int64_t>(MR, Q - q0));
          const int64_t o = n * os0 + p * os2 + q0 * os3 + j;
          KOut ko = co.tile(o, os3, n * rs0 + p * rs2 + q0 * rs3 + j, rs3, j, rows,
                            static_cast<int>(std::min<int64_t>(NR, K - j)));
          ko.prefetch = in_place && R * S * C >= kRowsPrefetchCMinK;  // config.h
          const float* bj = bpp + j / NR * Kpad * NR;
          if (!in_place)
            uk.fn_strided(KK, z + q0 * sw * RC, sw * RC, bj, ko);
          else if (!uk.fn_taps(S * C / KU, 0, R, toff.data(), xrow + q0 * sw * C, sw * C, bj, tile, rows, &ko))
            uk.epilogue(tile, ko);
        }
    }
  });
}

}  // namespace sft
