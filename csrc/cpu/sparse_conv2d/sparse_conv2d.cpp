// sft_cpu::sparse_conv2d: checks, then bands of output rows in parallel. Per band, a thread lays out the input
// rows the band reads (sparse_layout.h, in its L2) and runs tiles of TW output pixels, each running its nonzeros
// chunk by chunk of input channels (so the chunk's input stays in L1) into a K × TW accumulator block that the
// store turns into output pixels with the epilogue.
#include "cpu/sparse_conv2d/sparse_conv2d.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "cpu/engine/config.h"
#include "cpu/engine/isa.h"
#include "cpu/engine/ukernel.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/sparse_conv2d/sparse_layout.h"
#include "cpu/sparse_conv2d/tiles.h"

namespace sft {

using namespace sparse;

namespace {

const SparseKernels* kernels_named(const std::string& isa) {
  if (isa == "avx512") return cpu_has("avx512") ? &kernels_avx512() : nullptr;
  if (isa == "avx2") return cpu_has("avx2") ? &kernels_avx2() : nullptr;
  if (isa == "generic") return &kernels_generic();
  throw std::runtime_error("sparse conv kernels: must be avx512, avx2 or generic, got '" + isa + "'");
}

// SFT_KERNELS_SPARSE, else the float micro-kernels' ISA (SFT_KERNELS_ISA limits both).
std::atomic<const SparseKernels*>& current() {
  static std::atomic<const SparseKernels*> k{[] {
    const char* env = std::getenv("SFT_KERNELS_SPARSE");
    const std::string want = env && *env ? env : ukernel().isa;
    const SparseKernels* ks = kernels_named(want);
    if (!ks) throw std::runtime_error("SFT_KERNELS_SPARSE=" + want + ": this CPU cannot run it");
    return ks;
  }()};
  return k;
}

}  // namespace

std::string sparse_conv2d_kernel(const std::string& want) {
  if (!want.empty()) {
    const SparseKernels* ks = kernels_named(want);
    TORCH_CHECK(ks, "sft_cpu::sparse_conv2d_kernel: this CPU cannot run the ", want, " kernels");
    current().store(ks);
  }
  return current().load()->isa;
}

at::Tensor sparse_conv2d_cpu(const at::Tensor& input, const at::Tensor& packed, const c10::optional<at::Tensor>& bias,
                             int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t activation, double negative_slope,
                             const c10::optional<at::Tensor>& residual, const c10::optional<at::Tensor>& scale,
                             const c10::optional<at::Tensor>& shift) {
  sparse_conv2d_info(packed);  // checks it is a packed weight
  const int32_t* hdr = packed.data_ptr<int32_t>();
  TORCH_CHECK(input.dim() == 4 && input.scalar_type() == at::kFloat,
              "sft_cpu::sparse_conv2d: input must be float32 4-D");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "sft_cpu::sparse_conv2d: pairs expected");
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t K = hdr[kFK], KB = hdr[kFKB], nkb = hdr[kFNkb], ng = hdr[kFNg];
  TORCH_CHECK(hdr[kFC] == C && hdr[kFR] == R && hdr[kFS] == S,
              "sft_cpu::sparse_conv2d: the packed weight is for ", hdr[kFC], " input channels and a ", hdr[kFR], "x",
              hdr[kFS], " kernel, not ", C, " and ", R, "x", S);
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  TORCH_CHECK(sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0, "sft_cpu::sparse_conv2d: bad geometry");
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::sparse_conv2d: output size is not positive");
  const bool out_cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  at::Tensor out = pooled_empty({N, K, P, Q}, input.options(),
                                out_cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (N == 0) return out;
  const at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  TORCH_CHECK(!b.defined() || (b.numel() == K && b.scalar_type() == at::kFloat),
              "sft_cpu::sparse_conv2d: bias must be float32 (K)");
  const at::Tensor res = residual.has_value() && residual->defined() ? *residual : at::Tensor();
  TORCH_CHECK(!res.defined() || (res.sizes() == out.sizes() && res.scalar_type() == at::kFloat),
              "sft_cpu::sparse_conv2d: residual must match the output");
  at::Tensor x = input, ms, mt;
  if (scale.has_value() && scale->defined()) {
    TORCH_CHECK(shift.has_value() && shift->defined() && scale->sizes() == input.sizes() &&
                    shift->sizes() == input.sizes() && scale->scalar_type() == at::kFloat &&
                    shift->scalar_type() == at::kFloat,
                "sft_cpu::sparse_conv2d: scale and shift go together, float32, shaped like the input");
    if (scale->strides() == input.strides() && shift->strides() == input.strides()) {
      ms = *scale;
      mt = *shift;
    } else {
      x = at::addcmul(input + *shift, input, *scale);
    }
  }

  const SparseKernels& ks = *current().load();
  const bool avx512 = std::string(ks.isa) == "avx512";
  const int tw = KB == 4 ? ks.tw4 : ks.tw1;
  const SparseTileFn fn = KB == 4 ? ks.kb4 : ks.kb1;
  // wq: the tiles' columns, plus one cache line for sparse weights, whose larger chunks (below) read more rows
  // per tile: rows 2^k floats apart all start in the same L1 sets. Measured on 64→64 at 128², 1 thread (without /
  // with the line): 10 % kept 2.75 / 2.51 ms, 100 % kept 11.5 / 16.4 ms (there, with 8-channel chunks, it hurt).
  const double density = static_cast<double>(hdr[kFNnz]) / static_cast<double>(K * C / hdr[kFGroups] * R * S);
  const int64_t QT = (Q + tw - 1) / tw, wq = QT * tw + (density < kSparseLowDensity ? 16 : 0);
  // A padded input row spans every column a tap reads; a layout row holds its S tap-shifted copies.
  const Padded T{C, std::max(W + pw, (wq - 1) * sw + (S - 1) * dw + 1), pw};
  const int64_t row_pitch = S * C * wq;
  // Output rows per band: the band's layout rows ((B − 1)·sh + (R − 1)·dh + 1 of them) take about
  // kSparseBandBytes, so they stay in this core's L2 while its tiles read them.
  const int64_t span = (R - 1) * dh + 1;
  // The band count is rounded up to a multiple of the thread count so that the threads get equal shares (3 bands
  // of a 128-row image on 2 threads had run 1.5x one band's time: sft1 32→64 1×1, 0.44 -> 0.65 ms).
  const int64_t bmax =
      std::max<int64_t>(1, std::min<int64_t>(P, (kSparseBandBytes / (row_pitch * 4) - span) / sh + 1));
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t nb = (P + bmax - 1) / bmax;
  if (N * nb % threads) nb = std::min(P, ((N * nb + threads - 1) / threads * threads + N - 1) / N);
  const int64_t B = (P + nb - 1) / nb;
  const int64_t band_rows = (B - 1) * sh + span;
  TORCH_CHECK(band_rows * row_pitch < (int64_t(1) << 31), "sft_cpu::sparse_conv2d: image too large for 32-bit offsets");

  // Each block's offset from a tile's base: tap (c, r, s) is layout row r·dh, copy s, channel c.
  const int64_t nnzb = hdr[kFNnzb];
  const int32_t* ptr = hdr + kHeader;
  const int32_t* codes = ptr + nkb * ng + 1;
  const float* vals = reinterpret_cast<const float*>(codes + nnzb);
  std::vector<int32_t> off(nnzb);
  for (int64_t i = 0; i < nnzb; ++i) {
    const int64_t c = codes[i] / (R * S), r = codes[i] / S % R, s = codes[i] % S;
    off[i] = static_cast<int32_t>(r * dh * row_pitch + (s * C + c) * wq);
  }
  // Channel groups per chunk: the chunk's input under one tile (R·S runs of tw floats per channel) takes about
  // kSparseChunkBytes, or kSparseChunkBytesLow for sparser weights (config.h).
  const int64_t group_bytes = R * S * kPackChannels * tw * int64_t(sizeof(float));
  const int64_t chunk_bytes = density < kSparseLowDensity ? kSparseChunkBytesLow : kSparseChunkBytes;
  const int64_t gpc = std::max<int64_t>(1, chunk_bytes / group_bytes);

  const Store st{out.data_ptr<float>(), res.defined() ? res.data_ptr<float>() : nullptr,
                 b.defined() ? b.data_ptr<float>() : nullptr, K, out.stride(0), out.stride(1), out.stride(2),
                 out.stride(3), res.defined() ? res.stride(0) : 0, res.defined() ? res.stride(1) : 0,
                 res.defined() ? res.stride(2) : 0, res.defined() ? res.stride(3) : 0, static_cast<int>(activation),
                 static_cast<float>(negative_slope)};
  const int64_t nbands = (P + B - 1) / B;
  at::parallel_for(0, N * nbands, 1, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> acc_store, band_store, row_store;
    const auto aligned = [](std::vector<float>& v, size_t n) {
      v.resize(n + 16);
      return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
    };
    float* acc = aligned(acc_store, static_cast<size_t>(nkb * KB * tw));
    float* band = aligned(band_store, static_cast<size_t>(band_rows * row_pitch));
    float* trow = aligned(row_store, static_cast<size_t>(C * T.wp));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t n = item / nbands, p0 = item % nbands * B, p1 = std::min(P, p0 + B);
      const Source src{x.data_ptr<float>() + n * x.stride(0),
                       ms.defined() ? ms.data_ptr<float>() + n * ms.stride(0) : nullptr,
                       mt.defined() ? mt.data_ptr<float>() + n * mt.stride(0) : nullptr, H, W, x.stride(1),
                       x.stride(2), x.stride(3)};
      for (int64_t u = 0; u < (p1 - p0 - 1) * sh + span; ++u) {
        const int64_t h = p0 * sh + u - ph;
        float* d = band + u * row_pitch;
        if (h < 0 || h >= H) {
          std::memset(d, 0, row_pitch * sizeof(float));
          continue;
        }
        if (!fill_taps_direct(src, h, d, C, pw, wq, S, sw, dw, avx512)) {
          fill_padded(src, T, h, trow, avx512);
          expand_taps(trow, T, S, sw, dw, wq, d);
        }
      }
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t q0 = 0; q0 < Q; q0 += tw) {
          const float* xb = band + (p - p0) * sh * row_pitch + q0;
          for (int64_t g0 = 0; g0 < ng; g0 += gpc) {
            const int64_t g1 = std::min(ng, g0 + gpc);
            for (int64_t kb = 0; kb < nkb; ++kb) {
              const int64_t s = ptr[kb * ng + g0], e = ptr[kb * ng + g1];
              if (g0 > 0 && s == e) continue;
              fn(SparseTile{xb, off.data() + s, vals + s * KB, e - s, acc + kb * KB * tw, tw, g0 > 0});
            }
          }
          store_tile(st, acc, tw, n, p, q0, static_cast<int>(std::min<int64_t>(tw, Q - q0)), avx512);
        }
    }
  });
  return out;
}

}  // namespace sft
