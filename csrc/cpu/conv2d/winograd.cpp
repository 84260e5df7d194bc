// Winograd F(4×4, 3×3) and F(2×2, 3×3) convolution for stride-1, ungrouped 3×3 convs, dilated ones by sub-grids
// (Lavin & Gray, 2016). For output tiles of M×M (M = 4 or 2; input patches of A×A, A = M + 2), per block of tiles
// (sized so V and M stay in L1/L2; torch.ops.sft_cpu.set_winograd_tiles_per_block overrides):
//   1. input transform  V[ξ](t, c) = (Bᵀ d B)[ξ]   written straight into the GEMM engine's packed-A layout
//   2. A² GEMMs         M[ξ](t, k) = Σ_c V[ξ](t, c) · U[ξ](c, k)   (U = G g Gᵀ, packed once per weight)
//   3. output transform y = Aᵀ M A, then bias, activation, residual, stored into the output's layout
// F(4×4): 36 multiplies per 4×4 outputs per (c, k) instead of 144 (4× fewer than direct); F(2×2): 16 per 2×2
// (2.25×). The transforms are plain C++ loops over channels, compiled for AVX-512 / AVX2 / baseline by
// target_clones. Error: F(4×4)'s constants (up to 8 and 1/24) grow rounding error ~5-10× direct's; F(2×2)'s
// (1 and ½) do not (measured below direct's at C = 64); see sft_kernels/testing.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/conv2d/winograd.h"
#include "cpu/engine/act_vec.h"
#include "cpu/engine/gemm.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {
namespace {

// Output tiles per block (0: sized from kWinogradBlockBytes, config.h): V and M (36·TB·C and 36·TB·K floats)
// plus the transformed filters should stay in L2.
std::atomic<int64_t> g_tiles_per_block{0};

}  // namespace

namespace wino {

#define SFT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// U[ξ][c][k] for ξ = 6·i + j: G g Gᵀ of every (k, c) filter. w is (K, C, 3, 3) contiguous.
SFT_CLONES void filter_transform(const float* w, int64_t K, int64_t C, float* U) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (k * C + c) * 9;
      float t[6][3];  // G g
      for (int j = 0; j < 3; ++j) {
        const float g0 = g[0 * 3 + j], g1 = g[1 * 3 + j], g2 = g[2 * 3 + j];
        t[0][j] = g0 / 4.f;
        t[1][j] = -(g0 + g1 + g2) / 6.f;
        t[2][j] = -(g0 - g1 + g2) / 6.f;
        t[3][j] = g0 / 24.f + g1 / 12.f + g2 / 6.f;
        t[4][j] = g0 / 24.f - g1 / 12.f + g2 / 6.f;
        t[5][j] = g2;
      }
      for (int i = 0; i < 6; ++i) {  // (G g) Gᵀ
        const float g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
        const float u[6] = {g0 / 4.f, -(g0 + g1 + g2) / 6.f, -(g0 - g1 + g2) / 6.f, g0 / 24.f + g1 / 12.f + g2 / 6.f,
                            g0 / 24.f - g1 / 12.f + g2 / 6.f, g2};
        for (int j = 0; j < 6; ++j) U[((i * 6 + j) * C + c) * K + k] = u[j];
      }
    }
}

// 8-float vectors (GCC vector extension; aligned(4) so loads/stores may be unaligned): each target clone lowers
// them to its own ISA, where plain loops over six strided rows were left scalar by the auto-vectorizer.
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef float v16 __attribute__((vector_size(64), aligned(4)));

// Bᵀ applied along one axis to 6 rows of n channels each (rows at stride `rs`), written at stride `ws`; each
// group of 8 outputs goes to o + (c/8)·ocs (ocs = 8: contiguous; MR·8: straight into a packed-A panel).
// n is a multiple of 8.
SFT_CLONES void bt_rows(const float* __restrict d, int64_t rs, float* __restrict o, int64_t ws, int64_t ocs,
                        int64_t n) {
  for (int64_t c = 0; c < n; c += 8, o += ocs - 8) {
    const v8 d0 = *(const v8*)(d + c), d1 = *(const v8*)(d + rs + c), d2 = *(const v8*)(d + 2 * rs + c),
             d3 = *(const v8*)(d + 3 * rs + c), d4 = *(const v8*)(d + 4 * rs + c), d5 = *(const v8*)(d + 5 * rs + c);
    *(v8*)(o + c) = 4.f * d0 - 5.f * d2 + d4;
    *(v8*)(o + ws + c) = -4.f * d1 - 4.f * d2 + d3 + d4;
    *(v8*)(o + 2 * ws + c) = 4.f * d1 - 4.f * d2 - d3 + d4;
    *(v8*)(o + 3 * ws + c) = -2.f * d1 - d2 + 2.f * d3 + d4;
    *(v8*)(o + 4 * ws + c) = 2.f * d1 - d2 - 2.f * d3 + d4;
    *(v8*)(o + 5 * ws + c) = 4.f * d1 - 5.f * d3 + d5;
  }
}

// Unaligned loads and stores of T (a template argument drops the typedefs' aligned(4), so no plain derefs).
template <class T>
__attribute__((always_inline)) inline T ld(const float* p) {
  T v;
  __builtin_memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
__attribute__((always_inline)) inline void st(float* p, const T& v) {
  __builtin_memcpy(p, &v, sizeof(T));
}

// One step of at_tile on the channels [c, c + width of T) (T: 16 or 8 floats as a vector, or float).
template <class T>
__attribute__((always_inline)) inline void at_tile_step(const float* m, int64_t ri, int64_t rj, float* o, int64_t ldo,
                                                       int64_t c) {
  T t[6][4];
  for (int i = 0; i < 6; ++i) {  // along j, within row i
    const float* r = m + i * ri + c;
    const T m0 = ld<T>(r), m1 = ld<T>(r + rj), m2 = ld<T>(r + 2 * rj), m3 = ld<T>(r + 3 * rj), m4 = ld<T>(r + 4 * rj),
            m5 = ld<T>(r + 5 * rj);
    const T a = m1 + m2, b = m1 - m2, p = m3 + m4, q = m3 - m4;
    t[i][0] = m0 + a + p;
    t[i][1] = b + 2.f * q;
    t[i][2] = a + 4.f * p;
    t[i][3] = b + 8.f * q + m5;
  }
  for (int j = 0; j < 4; ++j) {  // along i
    const T a = t[1][j] + t[2][j], b = t[1][j] - t[2][j], p = t[3][j] + t[4][j], q = t[3][j] - t[4][j];
    st<T>(o + j * ldo + c, t[0][j] + a + p);
    st<T>(o + (4 + j) * ldo + c, b + 2.f * q);
    st<T>(o + (8 + j) * ldo + c, a + 4.f * p);
    st<T>(o + (12 + j) * ldo + c, b + 8.f * q + t[5][j]);
  }
}

// Aᵀ m A for one F(4×4) tile in one pass: m(i, j) = m + i·ri + j·rj, 6×6 rows of n channels -> o(a, b) =
// o + (4a + b)·ldo. Two 1-D passes through memory cost ~20 % of a 64→256 conv; fused, the 24 intermediate
// vectors of a 16-channel step stay in registers.
SFT_CLONES void at_tile_to(const float* __restrict m, int64_t ri, int64_t rj, float* __restrict o, int64_t ldo,
                           int64_t n) {
  int64_t c = 0;
  typedef float f16 __attribute__((vector_size(64)));
  typedef float f8 __attribute__((vector_size(32)));
  for (; c + 16 <= n; c += 16) at_tile_step<f16>(m, ri, rj, o, ldo, c);
  for (; c + 8 <= n; c += 8) at_tile_step<f8>(m, ri, rj, o, ldo, c);
  for (; c < n; ++c) at_tile_step<float>(m, ri, rj, o, ldo, c);
}

void at_tile(const float* m, int64_t ri, int64_t rj, float* o, int64_t n) { at_tile_to(m, ri, rj, o, n, n); }

}  // namespace wino

namespace {

using wino::at_tile;
using wino::bt_rows;
using wino::filter_transform;
using wino::v8;

// F(2×2, 3×3): U = G g Gᵀ with G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], layout as filter_transform's (ξ = 4·i + j).
SFT_CLONES void filter_transform_f2(const float* w, int64_t K, int64_t C, float* U) {
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (k * C + c) * 9;
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
        t[0][j] = g0;
        t[1][j] = (g0 + g1 + g2) * 0.5f;
        t[2][j] = (g0 - g1 + g2) * 0.5f;
        t[3][j] = g2;
      }
      for (int i = 0; i < 4; ++i) {
        const float g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
        const float u[4] = {g0, (g0 + g1 + g2) * 0.5f, (g0 - g1 + g2) * 0.5f, g2};
        for (int j = 0; j < 4; ++j) U[((i * 4 + j) * C + c) * K + k] = u[j];
      }
    }
}

// F(2×2, 3×3) Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] along one axis (as bt_rows, 4 rows).
SFT_CLONES void bt4_rows(const float* __restrict d, int64_t rs, float* __restrict o, int64_t ws, int64_t ocs,
                         int64_t n) {
  for (int64_t c = 0; c < n; c += 8, o += ocs - 8) {
    const v8 d0 = *(const v8*)(d + c), d1 = *(const v8*)(d + rs + c), d2 = *(const v8*)(d + 2 * rs + c),
             d3 = *(const v8*)(d + 3 * rs + c);
    *(v8*)(o + c) = d0 - d2;
    *(v8*)(o + ws + c) = d1 + d2;
    *(v8*)(o + 2 * ws + c) = d2 - d1;
    *(v8*)(o + 3 * ws + c) = d1 - d3;
  }
}

// F(2×2, 3×3) Aᵀ m A with Aᵀ = [1 1 1 0; 0 1 -1 -1] for one tile: m(i, j) = m + i·ri + j·rj, 4×4 rows of n
// channels -> o(a, b) = o + (2a + b)·n; along i first, then j.
SFT_CLONES void at4_tile(const float* __restrict m, int64_t ri, int64_t rj, float* __restrict o, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    float t[2][4];
    for (int j = 0; j < 4; ++j) {
      const float m0 = m[j * rj + c], m1 = m[ri + j * rj + c], m2 = m[2 * ri + j * rj + c], m3 = m[3 * ri + j * rj + c];
      t[0][j] = m0 + m1 + m2;
      t[1][j] = m1 - m2 - m3;
    }
    for (int a = 0; a < 2; ++a) {
      o[(2 * a) * n + c] = t[a][0] + t[a][1] + t[a][2];
      o[(2 * a + 1) * n + c] = t[a][1] - t[a][2] - t[a][3];
    }
  }
}

// Per output-tile size M (4: F(4×4,3×3), 2: F(2×2,3×3)): input tile A = M + 2, and its transforms.
template <int M>
struct Wino {
  static constexpr int A = M + 2;
  static void filter(const float* w, int64_t K, int64_t C, float* U) {
    if constexpr (M == 4) filter_transform(w, K, C, U); else filter_transform_f2(w, K, C, U);
  }
  static void bt(const float* d, int64_t rs, float* o, int64_t ws, int64_t ocs, int64_t n) {
    if constexpr (M == 4) bt_rows(d, rs, o, ws, ocs, n); else bt4_rows(d, rs, o, ws, ocs, n);
  }
  // Aᵀ m A of one tile: m(i, j) = m + i·ri + j·rj -> o(a, b) = o + (M·a + b)·n
  static void out(const float* m, int64_t ri, int64_t rj, float* o, int64_t n) {
    if constexpr (M == 4) at_tile(m, ri, rj, o, n); else at4_tile(m, ri, rj, o, n);
  }
};

}  // namespace

namespace wino {

SFT_CLONES void finish_row(float* __restrict y, const float* __restrict t, const float* __restrict bias,
                           const float* __restrict res, int64_t n, int act, float slope) {
  int64_t k = 0;
  // 16 channels a step with the branches outside the arithmetic (the scalar loop below was left unvectorized).
  // NaN < 0 is false, so NaN passes through the activation as in activate().
  const v16 zero = {}, sl = zero + slope;
  for (; k + 16 <= n; k += 16) {
    v16 v = *(const v16*)(t + k);
    if (bias) v += *(const v16*)(bias + k);
    if (act == kActRelu) v = v < zero ? zero : v;
    else if (act == kActLeaky) v = v < zero ? v * sl : v;
    else if (act == kActRelu6) v = v < zero ? zero : (v > zero + kRelu6Max ? zero + kRelu6Max : v);
    else if (act >= kActSilu) v = act_wide_v(v, act);
    if (res) v += *(const v16*)(res + k);
    *(v16*)(y + k) = v;
  }
  for (; k < n; ++k) {
    float v = t[k] + (bias ? bias[k] : 0.f);
    v = activate(v, act, slope);
    y[k] = v + (res ? res[k] : 0.f);
  }
}

void gather_patch(const float* x, const float* ms, const float* mt, int64_t base, int64_t xs2, int64_t xs3,
                  int64_t ih0, int64_t iw0, int64_t H, int64_t W, int64_t C, int64_t Cp, int A, float* d) {
  for (int i = 0; i < A; ++i)
    for (int j = 0; j < A; ++j) {
      const int64_t ih = ih0 + i, iw = iw0 + j;
      float* dst = d + (i * A + j) * Cp;
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) {
        std::memset(dst, 0, Cp * sizeof(float));
        continue;
      }
      const int64_t off = base + ih * xs2 + iw * xs3;
      if (ms)
        modulate_run(dst, x + off, ms + off, mt + off, C);
      else
        std::memcpy(dst, x + off, C * sizeof(float));
      if (Cp > C) std::memset(dst + C, 0, (Cp - C) * sizeof(float));
    }
}

}  // namespace wino

namespace {

using wino::finish_row;

// U = G g Gᵀ for every filter, packed per ξ as B panels [K/NR][Cp][NR]; cached per weight (weight_cache.cpp).
// With a pixel shuffle r, output channels are reordered k = c·r² + i·r + j -> (i·r + j)·K/r² + c, so each
// sub-pixel (i, j) of the shuffled output is one contiguous run of K/r² channels.
template <int M>
at::Tensor transformed_filter(const at::Tensor& weight_in, int NR, int64_t r) {
  constexpr int A2 = Wino<M>::A * Wino<M>::A;
  return cached_weight_transform(weight_in, (1 << 20) + M * (1 << 16) + NR * 16 + r, [&](const at::Tensor& w) {
    const int64_t K = w.size(0), C = w.size(1);
    const at::Tensor weight =
        r > 1 ? w.view({K / (r * r), r * r, C, 3, 3}).transpose(0, 1).reshape({K, C, 3, 3}).contiguous() : w;
    const int64_t Cp = round_up(C, KU), Kp = (K + NR - 1) / NR * NR;
    at::Tensor U = at::empty({A2 * C * K}, weight.options());
    Wino<M>::filter(weight.data_ptr<float>(), K, C, U.data_ptr<float>());
    at::Tensor Up = at::empty({A2 * Kp * Cp + 16}, weight.options());
    for (int xi = 0; xi < A2; ++xi)
      pack_b(U.data_ptr<float>() + xi * C * K, C, K, K, 1, NR, Up.data_ptr<float>() + xi * Kp * Cp);
    return Up;
  });
}

// One undilated conv that a Winograd pass runs: x0, o0, r0 are element offsets into the input (and modulation
// maps), output and residual; H × W input and P × Q output pixels, zero padding ph, pw on the top and left.
struct SubGrid {
  int64_t x0, o0, r0, H, W, P, Q, ph, pw;
};

// The algorithm for output tiles of M×M (Wino<M>); see conv2d_winograd_into (paths.h).
// A dilated conv's sub-grids all run in one pass (grids.size() = dh·dw; one grid with offsets 0 otherwise): the
// tiles of every grid and image are numbered together, so small sub-grids still fill the GEMMs' rows.
template <int M>
void winograd_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                   const std::vector<SubGrid>& grids, int64_t dh, int64_t dw, int64_t activation, double slope,
                   const at::Tensor& res, at::Tensor& out, int64_t shuffle, const at::Tensor& mscale,
                   const at::Tensor& mshift) {
  using WT = Wino<M>;
  constexpr int A = WT::A, A2 = A * A;
  const int64_t N = x.size(0), C = x.size(1), K = weight.size(0);
  const int64_t r = shuffle, Cs = K / (r * r);
  TORCH_CHECK(x.stride(1) == 1 && out.stride(1) == 1 && (!res.defined() || res.stride(1) == 1),
              "winograd: channels-last tensors expected");
  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const int64_t Cp = round_up(C, KU), Kp = (K + NR - 1) / NR * NR;
  int64_t tb = g_tiles_per_block.load();
  if (tb <= 0) tb = std::max<int64_t>(1, kWinogradBlockBytes / (A2 * 4 * (Cp + K)));
  tb = std::max<int64_t>(MR, tb / MR * MR);
  std::vector<int64_t> first(grids.size() + 1, 0);  // the grids' first tiles
  for (size_t g = 0; g < grids.size(); ++g)
    first[g + 1] = first[g] + N * ((grids[g].P + M - 1) / M) * ((grids[g].Q + M - 1) / M);
  const int64_t T = first.back();
  // Tile tt: its grid, image and tile row / column.
  const auto locate = [&](int64_t tt, int64_t& n, int64_t& ty, int64_t& tx) -> const SubGrid& {
    const size_t g = std::upper_bound(first.begin(), first.end(), tt) - first.begin() - 1;
    const int64_t tw = (grids[g].Q + M - 1) / M, th = (grids[g].P + M - 1) / M, t = tt - first[g];
    n = t / (th * tw), ty = t / tw % th, tx = t % tw;
    return grids[g];
  };

  const at::Tensor Up = transformed_filter<M>(weight, NR, r);
  at::Tensor bre = b;  // bias in the (sub-pixel, channel) order of the reordered filters
  if (b.defined() && r > 1) bre = b.view({Cs, r * r}).t().contiguous();
  const float* xp = x.data_ptr<float>();
  const float* msp = mscale.defined() ? mscale.data_ptr<float>() : nullptr;
  const float* mtp = mshift.defined() ? mshift.data_ptr<float>() : nullptr;
  const float* up = Up.data_ptr<float>();
  const float* bp = bre.defined() ? bre.data_ptr<float>() : nullptr;
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  // a grid's rows and columns are dh and dw apart
  const int64_t xs0 = x.stride(0), xs2 = dh * x.stride(2), xs3 = dw * x.stride(3);
  const int64_t os0 = out.stride(0), os2 = dh * out.stride(2), os3 = dw * out.stride(3);
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? dh * res.stride(2) : 0, rs3 = rp ? dw * res.stride(3) : 0;
  const int act = static_cast<int>(activation);
  const float sl = static_cast<float>(slope);

  at::parallel_for(0, (T + tb - 1) / tb, 1, [&](int64_t blk0, int64_t blk1) {
    thread_local std::vector<float> vbuf, mbuf, dbuf;
    vbuf.resize(A2 * tb * Cp + 64);
    mbuf.resize(A2 * tb * K + 64);
    // d: the A×A input patch [pixel][Cp]; t: Bᵀ d (A²·Cp); y: one tile's M×M outputs [i][j][K]
    dbuf.resize(2 * A2 * Cp + M * M * K + 64);
    float* V = vbuf.data();
    float* Mb = mbuf.data();
    float* d = dbuf.data();
    float* t = d + A2 * Cp;
    float* y = t + A2 * Cp;
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t t0 = blk * tb, nt = std::min(tb, T - t0);
      // 1. input transform of every tile of the block into packed-A panels [ξ][t/MR][Cp/8][MR][8].
      for (int64_t ti = 0; ti < tb; ++ti) {
        if (ti < nt) {
          int64_t n, ty, tx;
          const SubGrid& g = locate(t0 + ti, n, ty, tx);
          const int64_t ih0 = ty * M - g.ph, iw0 = tx * M - g.pw, H = g.H, W = g.W;
          if (!msp && C == Cp && ih0 >= 0 && ih0 + A <= H && iw0 >= 0 && iw0 + A <= W) {
            // interior tile: read the patch in place (columns: Bᵀ d)
            const float* src = xp + g.x0 + n * xs0 + ih0 * xs2 + iw0 * xs3;
            for (int j = 0; j < A; ++j) WT::bt(src + j * xs3, xs2, t + j * Cp, A * Cp, 8, Cp);
          } else {  // border tile (or modulated input): gather with zero padding first
            wino::gather_patch(xp, msp, mtp, g.x0 + n * xs0, xs2, xs3, ih0, iw0, H, W, C, Cp, A, d);
            for (int j = 0; j < A; ++j) WT::bt(d + j * Cp, A * Cp, t + j * Cp, A * Cp, 8, Cp);
          }
          // rows: (Bᵀ d) B, written as row ti of the packed-A panels of ξ = A·i + j
          float* panel = V + (ti / MR) * MR * Cp + (ti % MR) * KU;
          for (int i = 0; i < A; ++i)
            WT::bt(t + i * A * Cp, Cp, panel + i * A * tb * Cp, tb * Cp, MR * KU, Cp);
        } else {  // padding rows of the last panel
          for (int xi = 0; xi < A2; ++xi) {
            float* panel = V + xi * tb * Cp + (ti / MR) * MR * Cp + (ti % MR) * KU;
            for (int64_t c = 0; c < Cp; c += KU) std::memset(panel + (c / KU) * MR * KU, 0, KU * sizeof(float));
          }
        }
      }
      // 2. the A² GEMMs: M[ξ](t, k) for this block's tiles.
      for (int xi = 0; xi < A2; ++xi)
        for (int64_t i = 0; i < nt; i += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, nt - i));
          for (int64_t j = 0; j < K; j += NR) {
            KOut ko{Mb + (xi * tb + i) * K + j, K, nullptr, 0, nullptr, kActNone, 0.f, false, false, mr,
                    static_cast<int>(std::min<int64_t>(NR, K - j))};
            ko.prefetch = true;  // its own C, fetched for writing before the k loop
            uk.fn(Cp / KU, V + xi * tb * Cp + i * Cp, up + xi * Kp * Cp + j * Cp, ko);
          }
        }
      // 3. output transform + epilogue.
      for (int64_t ti = 0; ti < nt; ++ti) {
        int64_t n, ty, tx;
        const SubGrid& g = locate(t0 + ti, n, ty, tx);
        const int64_t P = g.P, Q = g.Q;
        WT::out(Mb + ti * K, A * tb * K, tb * K, y, K);  // M[ξ = A·i + j] of tile ti at (ξ·tb + ti)·K
        for (int i = 0; i < M; ++i) {
          const int64_t oh = ty * M + i;
          if (oh >= P) break;
          const float* rowp = y + i * M * K;
          for (int j = 0; j < M; ++j) {
            const int64_t ow = tx * M + j;
            if (ow >= Q) break;
            for (int64_t sub = 0; sub < r * r; ++sub) {  // r = 1: the whole K-vector at (oh, ow)
              const int64_t yh = oh * r + sub / r, yw = ow * r + sub % r;
              finish_row(op + g.o0 + n * os0 + yh * os2 + yw * os3, rowp + j * K + sub * Cs,
                         bp ? bp + sub * Cs : nullptr, rp ? rp + g.r0 + n * rs0 + yh * rs2 + yw * rs3 : nullptr, Cs,
                         act, sl);
            }
          }
        }
      }
    }
  });
}

}  // namespace

void set_winograd_tiles_per_block(int64_t tiles) { g_tiles_per_block.store(tiles); }

void conv2d_winograd_into(int64_t tile, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                          const at::Tensor& res, at::Tensor& out, int64_t shuffle, const at::Tensor& mscale,
                          const at::Tensor& mshift) {
  const int64_t dh = dilation[0], dw = dilation[1], H = x.size(2), W = x.size(3), ph = padding[0], pw = padding[1];
  const int64_t P = out.size(2) / shuffle, Q = out.size(3) / shuffle;
  TORCH_CHECK(shuffle == 1 || (dh == 1 && dw == 1), "winograd: a dilated conv does not write a pixel shuffle");
  // Output (i + dh·y', j + dw·x') reads input rows i − ph + dh·(y' + r), columns likewise: an undilated conv on
  // the sub-grid of rows a, a + dh, ... with a = (i − ph) mod dh, padded by (a − i + ph) / dh on top.
  std::vector<SubGrid> grids;
  for (int64_t i = 0; i < std::min(P, dh); ++i)
    for (int64_t j = 0; j < std::min(Q, dw); ++j) {
      const int64_t a = ((i - ph) % dh + dh) % dh, c = ((j - pw) % dw + dw) % dw;
      grids.push_back(SubGrid{a * x.stride(2) + c * x.stride(3), i * out.stride(2) + j * out.stride(3),
                              res.defined() ? i * res.stride(2) + j * res.stride(3) : 0, sub_grid_size(H, a, dh),
                              sub_grid_size(W, c, dw), sub_grid_size(P, i, dh), sub_grid_size(Q, j, dw),
                              (a - i + ph) / dh, (c - j + pw) / dw});
    }
  if (tile == 2)
    winograd_into<2>(x, weight, b, grids, dh, dw, activation, slope, res, out, shuffle, mscale, mshift);
  else
    winograd_into<4>(x, weight, b, grids, dh, dw, activation, slope, res, out, shuffle, mscale, mshift);
}

}  // namespace sft
