#include "cpu/runtime/layout.h"

#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/engine/config.h"
#include "cpu/engine/ukernel.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {

namespace {

// d[j][i] = s[i][j] (+ a[j][i]) for a 16×16 block (row pitches ls, ld; a pitched as d): 16 loads, four rounds
// of in-register shuffles, 16 stores. Each source line is read once, where the scalar loop came back to it 16
// times (with 64 channels at 128² the rows are 64 KB apart, all in one L1 set, and were evicted in between).
__attribute__((target("avx512f"))) void transpose16(const float* s, int64_t ls, float* d, int64_t ld, const float* a) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(s + i * ls);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
  for (int i = 0; i < 16; ++i)
    _mm512_storeu_ps(d + i * ld, a ? _mm512_add_ps(r[i], _mm512_loadu_ps(a + i * ld)) : r[i]);
}

// d = s0[0] s1[0] .. s{C-1}[0] s0[1] ..: C rows of n ≤ 16 floats (row pitch ls) interleaved into C·n floats, for
// C ≤ 4 (an RGB image to channels_last): each output vector is one two-source permute of rows 0 and 1, blended
// where it holds channels 2 and 3 with the same permute of rows 2 and 3.
__attribute__((target("avx512f"))) void interleave_few(const float* s, int64_t ls, int C, int n, float* d) {
  const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
  __m512 r[4];
  for (int c = 0; c < 4; ++c) r[c] = c < C ? _mm512_maskz_loadu_ps(m, s + c * ls) : _mm512_setzero_ps();
  // Per (C, output vector): lane e holds channel c = g % C of pixel g / C (g = 16·v + e): permute index
  // pixel + 16·(c & 1), and whether c >= 2.
  struct Table {
    alignas(64) int32_t idx[5][4][16];
    __mmask16 high[5][4];
    Table() {
      for (int cc = 1; cc <= 4; ++cc)
        for (int v = 0; v < cc; ++v) {
          high[cc][v] = 0;
          for (int e = 0; e < 16; ++e) {
            const int g = 16 * v + e, c = g % cc;
            idx[cc][v][e] = g / cc + 16 * (c & 1);
            if (c >= 2) high[cc][v] = static_cast<__mmask16>(high[cc][v] | (1u << e));
          }
        }
    }
  };
  static const Table tab;
  for (int v = 0; v < C; ++v) {
    const __m512i ix = _mm512_load_si512(tab.idx[C][v]);
    __m512 o = _mm512_permutex2var_ps(r[0], ix, r[1]);
    if (C > 2) o = _mm512_mask_blend_ps(tab.high[C][v], o, _mm512_permutex2var_ps(r[2], ix, r[3]));
    const int left = C * n - 16 * v;
    if (left <= 0) break;
    _mm512_mask_storeu_ps(d + 16 * v, left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                                 : static_cast<__mmask16>((1u << left) - 1u), o);
  }
}

}  // namespace

// ATen's copy between NCHW and channels-last runs far below memory speed on one thread (2.8 GB/s for 64 channels
// at 128², where the channel stride is a multiple of 4 KB), and it is the layout change NCHW callers pay.
void transpose_batched(const float* src, float* dst, const float* add, int64_t B, int64_t rows, int64_t cols) {
  constexpr int64_t T = kTransposeBlock;
  static_assert(T % 16 == 0, "whole 16×16 register transposes per block");
  const bool v512 = std::strcmp(ukernel().isa, "avx512") == 0;
  if (v512 && rows <= 4 && !add) {  // few channels to channels_last: 16 pixels at a time, interleaved
    const int64_t nb = (cols + 15) / 16;
    at::parallel_for(0, B * nb, 64, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / nb, j = t % nb * 16;
        interleave_few(src + b * rows * cols + j, cols, static_cast<int>(rows),
                       static_cast<int>(std::min<int64_t>(16, cols - j)), dst + b * rows * cols + j * rows);
      }
    });
    return;
  }
  const int64_t rb = (rows + T - 1) / T, cb = (cols + T - 1) / T;
  at::parallel_for(0, B * rb * cb, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (rb * cb), i0 = (t / cb) % rb * T, j0 = t % cb * T;
      const int64_t i1 = std::min(rows, i0 + T), j1 = std::min(cols, j0 + T);
      const float* s = src + b * rows * cols;
      float* d = dst + b * rows * cols;
      const float* a = add ? add + b * rows * cols : nullptr;
      if (v512 && i1 - i0 == T && j1 - j0 == T) {
        for (int64_t i = i0; i < i1; i += 16)
          for (int64_t j = j0; j < j1; j += 16)
            transpose16(s + i * cols + j, cols, d + j * rows + i, rows, a ? a + j * rows + i : nullptr);
        continue;
      }
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) d[j * rows + i] = s[i * cols + j] + (a ? a[j * rows + i] : 0.f);
    }
  });
}

at::Tensor to_channels_last_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.device().is_cpu(), "sft_cpu::to_channels_last: x must be a 4-D CPU tensor");
  // Unit channel stride too: a 1-channel (or 1×1-pixel) NCHW map counts as channels_last-contiguous without it.
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast) && x.stride(1) == 1) return x;
  at::Tensor y = pooled_empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  if (x.scalar_type() == at::kFloat && x.is_contiguous())
    transpose_batched(x.data_ptr<float>(), y.data_ptr<float>(), nullptr, x.size(0), x.size(1),
                      x.size(2) * x.size(3));
  else
    y.copy_(x);
  return y;
}

at::Tensor to_nchw_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.device().is_cpu(), "sft_cpu::to_nchw: x must be a 4-D CPU tensor");
  if (x.is_contiguous()) return x;
  // From the buffer pool, as the ops' outputs handed to channels_last callers are (a block goes back to the pool
  // when the caller drops the map): a fresh 8 MB map page-faulted in for 4.5 of the 4.8 ms this took.
  at::Tensor y = pooled_empty(x.sizes(), x.options());
  if (x.scalar_type() == at::kFloat && x.is_contiguous(at::MemoryFormat::ChannelsLast))
    transpose_batched(x.data_ptr<float>(), y.data_ptr<float>(), nullptr, x.size(0), x.size(2) * x.size(3),
                      x.size(1));
  else
    y.copy_(x);
  return y;
}

at::Tensor shuffle_sub_pixels(const at::Tensor& y, int64_t r) {
  const int64_t N = y.size(0), Cs = y.size(1) / (r * r), P = y.size(2), Q = y.size(3);
  // [N, P, Q, (i, j, c)] → [N, P, i, Q, (j, c)]: runs of r·Cs channels, moved as 8-byte words where they are whole
  // words (ATen copies a strided uint8 tensor byte by byte: 4.3 → 2.0 ms for a 16 MB map)
  const at::Tensor t = y.permute({0, 2, 3, 1});  // NHWC, dense
  const int64_t run = r * Cs * y.element_size();
  if (run % 8 == 0 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 8 == 0) {
    const at::Tensor words = t.view(at::kByte).view(at::kLong).view({N, P, Q, r, run / 8});
    // contiguous(), not reshape: with one row (P = 1) reshape returns a strided view, and the views below need
    // the moved rows dense.
    const at::Tensor moved = words.permute({0, 1, 3, 2, 4}).contiguous().view({N, P * r, Q, run / 8});
    return moved.view(at::kByte).view(y.scalar_type()).view({N, P * r, Q * r, Cs}).permute({0, 3, 1, 2});
  }
  const at::Tensor s6 = t.reshape({N, P, Q, r, r, Cs}).permute({0, 1, 3, 2, 4, 5});
  return s6.contiguous().view({N, P * r, Q * r, Cs}).permute({0, 3, 1, 2});  // dense NHWC, as above
}

}  // namespace sft
