// int8 implicit-GEMM conv2d on tensor cores: uint8 activations × int8 weights, int32 sums, requantization fused
// into the store. NHWC; the interface and the math are in qconv2d.h.
//
// The structure is conv2d.cu's, in bytes: a thread block computes a BM × BN tile of the per-group GEMM; the A tile
// (output pixels × reduction) is gathered from the NHWC input 16 bytes (16 channels of one tap) per cp.async, B is
// the KRSC weight; a STAGES-deep cp.async ring overlaps loads with mma.sync m16n8k32 u8·s8 → s32. An 8-bit 16×32 A
// fragment has the byte layout of a 16-bit 16×16 one, so ldmatrix feeds both alike.
//
// The input's zero point: a tap outside the image must contribute (zx − zx)·w = 0. Its 16 bytes are stored as
// zx (a plain shared-memory store instead of the cp.async), so every tap is a real uint8 value and the shift
// comes out exactly once in the epilogue: Σ (x − zx)·w = acc − zx·Σw, Σw per output channel (wsum), as oneDNN and
// XNNPACK fold it. Only CUDA headers: the torch binding lives in bindings.cpp.
#include <cuda_bf16.h>
#include <stdint.h>

#include "../common/elem.cuh"
#include "../common/launch.cuh"
#include "../common/ptx.cuh"
#include "qconv2d.h"

namespace sft_cuda {
namespace {

constexpr int kPadBytes = 16;  // per shared-memory row: ldmatrix reads are bank-conflict free

using ptx::cp_async_16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x4;

__device__ __forceinline__ void mma_u8s8(int (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int BM, int BN, int BK, int STAGES>
constexpr int smem_bytes() {
  return STAGES * (BM + BN) * (BK + kPadBytes);
}

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    qconv2d_igemm_kernel(const QConv2dParams p) {
  constexpr int WARPS_N = BN / WN;
  constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MI = WM / 16, NI = WN / 8;  // mma tiles per warp
  constexpr int LDS = BK + kPadBytes;
  constexpr int CHUNKS = BK / 16;  // 16-byte chunks per tile row
  constexpr int ROWS_PER_PASS = THREADS / CHUNKS;
  constexpr int A_ITERS = BM / ROWS_PER_PASS, B_ITERS = BN / ROWS_PER_PASS;
  static_assert(NI % 2 == 0 && BK % 32 == 0 && A_ITERS >= 1 && B_ITERS >= 1, "bad tile config");
  static_assert(BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0, "tile rows must split over the threads");

  extern __shared__ __align__(16) unsigned char smem[];
  uint8_t* As = smem;
  int8_t* Bs = reinterpret_cast<int8_t*>(smem + STAGES * BM * LDS);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int M = p.n * p.p * p.q, Kg = p.k / p.groups, cin = p.groups * p.cg;
  const int gemm_k = p.r * p.s * p.cg;
  const int k_tiles = (gemm_k + BK - 1) / BK;
  const int chunk = tid % CHUNKS, row0 = tid / CHUNKS;
  const unsigned zx4 = 0x01010101u * static_cast<unsigned>(p.x_zero_point);
  const uint4 zx16 = make_uint4(zx4, zx4, zx4, zx4);

  // Per-thread A rows: image base offset and the top-left input coordinate of each output pixel.
  long a_base[A_ITERS];
  int a_h0[A_ITERS], a_w0[A_ITERS];
#pragma unroll
  for (int i = 0; i < A_ITERS; ++i) {
    const int m = m0 + row0 + i * ROWS_PER_PASS;
    if (m < M) {
      const int img = m / (p.p * p.q), pq = m % (p.p * p.q);
      a_base[i] = (long)img * p.h * p.w_in * cin + (long)g * p.cg;
      a_h0[i] = (pq / p.q) * p.stride_h - p.pad_h;
      a_w0[i] = (pq % p.q) * p.stride_w - p.pad_w;
    } else {
      a_base[i] = 0;
      a_h0[i] = -(1 << 28);  // never inside the image: the row reads the zero point (and is never stored)
      a_w0[i] = 0;
    }
  }

  auto load_tile = [&](int kt, int stage) {
    const int kk = kt * BK + chunk * 16;  // first reduction index of this thread's chunk
    const bool k_ok = kk < gemm_k;
    const int rs = kk / p.cg, c = kk - rs * p.cg;  // Cg % 16 == 0: a chunk never straddles two taps
    const int fr = rs / p.s, fs = rs - fr * p.s;
    uint8_t* a_dst = As + stage * BM * LDS + chunk * 16;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int hh = a_h0[i] + fr * p.dil_h, ww = a_w0[i] + fs * p.dil_w;
      const bool ok = k_ok && (unsigned)hh < (unsigned)p.h && (unsigned)ww < (unsigned)p.w_in;
      uint8_t* dst = a_dst + (row0 + i * ROWS_PER_PASS) * LDS;
      if (ok)
        cp_async_16(dst, p.x + a_base[i] + ((long)hh * p.w_in + ww) * cin + c, true);
      else  // outside the image, or past K (where the weights are zero): the zero point
        *reinterpret_cast<uint4*>(dst) = zx16;
    }
    int8_t* b_dst = Bs + stage * BN * LDS + chunk * 16;
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int nn = n0 + row0 + i * ROWS_PER_PASS;
      const bool ok = k_ok && nn < Kg;
      const int8_t* src = ok ? p.w + (long)(g * Kg + nn) * gemm_k + kk : p.w;
      cp_async_16(b_dst + (row0 + i * ROWS_PER_PASS) * LDS, src, ok);
    }
  };

  int acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) load_tile(s, s);
    cp_async_commit();  // commit even when empty so the group count stays fixed
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // tile kt has landed (for this thread) ...
    __syncthreads();              // ... for every thread (plain zero-point stores too), and tile kt-1 is consumed
    const int next = kt + STAGES - 1;
    if (next < k_tiles) load_tile(next, next % STAGES);
    cp_async_commit();

    const uint8_t* a_s = As + (kt % STAGES) * BM * LDS;
    const int8_t* b_s = Bs + (kt % STAGES) * BN * LDS;
#pragma unroll
    for (int k32 = 0; k32 < BK; k32 += 32) {
      unsigned a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {  // matrices: rows 0-7 / 8-15 × bytes 0-15 / 16-31 → a0 a1 a2 a3
        const int row = warp_m * WM + i * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(a[i], a_s + row * LDS + k32 + (lane >> 4) * 16);
      }
#pragma unroll
      for (int j = 0; j < NI; j += 2) {  // matrices: n tile j bytes 0-15 / 16-31, n tile j+1 the same
        const int row = warp_n * WN + j * 8 + (lane & 7) + (lane >> 4) * 8;
        unsigned t[4];
        ldmatrix_x4(t, b_s + row * LDS + k32 + ((lane >> 3) & 1) * 16);
        b[j][0] = t[0];
        b[j][1] = t[1];
        b[j + 1][0] = t[2];
        b[j + 1][1] = t[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma_u8s8(acc[i][j], a[i], b[j]);
    }
  }
  cp_async_wait<0>();

  // Epilogue straight from the accumulators: each thread owns pairs of adjacent output channels.
  const bool quant = p.out_scale > 0.f, s8 = p.out_dtype == 1, bf16 = p.out_dtype == 2;
  const float inv_out = quant ? 1.f / p.out_scale : 0.f;
  const float qlo = s8 ? -128.f : 0.f, qhi = s8 ? 127.f : 255.f;
  const bool pairs = Kg % 2 == 0;  // two adjacent channels are adjacent in memory and aligned
  auto finish = [&](int a, int kc, long idx) {
    float v = static_cast<float>(a - p.x_zero_point * p.wsum[kc]) * p.mult[kc];
    if (p.bias) v += p.bias[kc];
    if (p.activation == 1) v = fmaxf(v, 0.f);
    else if (p.activation == 2) v = v > 0.f ? v : v * p.negative_slope;
    else if (p.activation == 3) v = fminf(fmaxf(v, 0.f), 6.f);  // relu6
    else if (p.activation >= 4) v = elem::activate(v, p.activation, p.negative_slope);  // silu, hardswish, gelu
    if (p.residual) v += p.residual[idx];
    // dequantized on its own (__fmul_rn: no FMA contraction), as a residual dequantized before the call
    if (p.residual_u8) v += __fmul_rn(static_cast<float>(p.residual_u8[idx] - p.res_zero_point), p.res_scale);
    return v;
  };
  auto requant = [&](float v) {  // the byte of a uint8 or int8 (two's complement) output
    const float qv = rintf(v * inv_out) + static_cast<float>(p.out_zero_point);
    return static_cast<uint8_t>(static_cast<int>(fminf(fmaxf(qv, qlo), qhi)));
  };
  auto store1 = [&](long idx, float v) {
    if (quant) static_cast<uint8_t*>(p.y)[idx] = requant(v);
    else if (bf16) static_cast<__nv_bfloat16*>(p.y)[idx] = __float2bfloat16_rn(v);
    else static_cast<float*>(p.y)[idx] = v;
  };
#pragma unroll
  for (int i = 0; i < MI; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + warp_m * WM + i * 16 + (lane >> 2) + half * 8;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int nn = n0 + warp_n * WN + j * 8 + (lane & 3) * 2;
        if (nn >= Kg) continue;
        const int kc = g * Kg + nn;
        const long idx = (long)m * p.k + kc;
        const float v0 = finish(acc[i][j][half * 2], kc, idx);
        if (pairs) {
          const float v1 = finish(acc[i][j][half * 2 + 1], kc + 1, idx + 1);
          if (quant)
            *reinterpret_cast<uchar2*>(static_cast<uint8_t*>(p.y) + idx) = make_uchar2(requant(v0), requant(v1));
          else if (bf16)
            *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.y) + idx) = __floats2bfloat162_rn(v0, v1);
          else
            *reinterpret_cast<float2*>(static_cast<float*>(p.y) + idx) = make_float2(v0, v1);
          continue;
        }
        store1(idx, v0);
        if (nn + 1 < Kg) store1(idx + 1, finish(acc[i][j][half * 2 + 1], kc + 1, idx + 1));
      }
    }
  }
}

// The tile configs: X(BM, BN, BK, WM, WN, STAGES) each, in the public index order (names
// m<BM>_n<BN>_k<BK>_w<WM>x<WN>_s<STAGES>). BK is in int8 elements: 64 moves the bytes of conv2d.cu's fp16 BK=32.
#define SFT_QCONV2D_TILE_CONFIGS(X) \
  X(128, 64, 64, 64, 32, 4)         \
  X(128, 128, 64, 64, 32, 3)        \
  X(64, 64, 64, 32, 32, 4)          \
  X(128, 32, 64, 32, 32, 4)         \
  X(128, 64, 128, 64, 32, 3)

constexpr TileConfig kConfigs[] = {SFT_QCONV2D_TILE_CONFIGS(SFT_TILE_ENTRY)};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);
enum TileIndex : int { SFT_QCONV2D_TILE_CONFIGS(SFT_TILE_ENUM) kTileCount };
static_assert(kTileCount == kNumConfigs, "one index per tile config");

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
cudaError_t launch(const QConv2dParams& p, cudaStream_t stream) {
  auto kernel = qconv2d_igemm_kernel<BM, BN, BK, WM, WN, STAGES>;
  constexpr int bytes = smem_bytes<BM, BN, BK, STAGES>();
  const long M = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  dim3 grid((unsigned)((M + BM - 1) / BM), (unsigned)((Kg + BN - 1) / BN), (unsigned)p.groups);
  return launch_with_smem(kernel, grid, (BM / WM) * (BN / WN) * 32, bytes, p, stream);
}

}  // namespace

int qconv2d_num_tile_configs() { return kNumConfigs; }

TileConfig qconv2d_tile_config(int index) { return tile_config_at(kConfigs, index); }

int qconv2d_choose_tile_config(const QConv2dParams& p) {
  const long M = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  if (Kg <= 32) return kTile_m128_n32_k64_w32x32_s4;
  if (Kg > 64) return kTile_m128_n128_k64_w64x32_s3;
  // Small problems: smaller M tiles keep all SMs busy (an H200 has 132).
  return M >= 128L * 264 ? kTile_m128_n64_k64_w64x32_s4 : kTile_m64_n64_k64_w32x32_s4;
}

cudaError_t qconv2d_launch(const QConv2dParams& p, int config, cudaStream_t stream, const char** why) {
  auto fail = [&](const char* msg) {
    if (why) *why = msg;
    return cudaErrorInvalidValue;
  };
  if (!p.x || !p.w || !p.wsum || !p.mult || !p.y) return fail("x, w, wsum, mult and y must be set");
  if (const char* e = conv_params_error(p)) return fail(e);
  const int zlo = p.out_dtype == 1 ? -128 : 0;
  if (p.x_zero_point < 0 || p.x_zero_point > 255 || p.out_zero_point < zlo || p.out_zero_point > zlo + 255 ||
      p.res_zero_point < 0 || p.res_zero_point > 255)
    return fail("zero points must be in [0, 255] ([-128, 127] for an int8 output)");
  if (!(p.out_scale >= 0.f)) return fail("out_scale must be >= 0 (0: float32 output)");
  if (!(p.out_dtype == 0 || (p.out_dtype == 1 && p.out_scale > 0.f) || (p.out_dtype == 2 && p.out_scale == 0.f)))
    return fail("out_dtype: 0 (uint8 / float32), 1 (int8, out_scale > 0) or 2 (bfloat16, out_scale = 0)");
  if (p.residual && p.residual_u8) return fail("give residual or residual_u8, not both");
  if ((long)p.r * p.s * p.cg * 255L * 128L > 0x7fffffffL) return fail("R*S*Cg too large for int32 sums");
  if (p.cg <= 0 || p.cg % 16) return fail("channels per group must be a positive multiple of 16 (pad them)");
  if ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.w)) % 16)
    return fail("x and w must be 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(p.y) % 8) return fail("y must be 8-byte aligned (paired stores)");
  if (p.n <= 0 || p.p <= 0 || p.q <= 0) return cudaSuccess;  // nothing to compute
  if (config < 0) config = qconv2d_choose_tile_config(p);
  switch (config) {
#define SFT_TILE_CASE(bm, bn, bk, wm, wn, st) \
  case SFT_TILE_INDEX(bm, bn, bk, wm, wn, st): return launch<bm, bn, bk, wm, wn, st>(p, stream);
    SFT_QCONV2D_TILE_CONFIGS(SFT_TILE_CASE)
#undef SFT_TILE_CASE
  }
  return fail("no such tile config");
}

}  // namespace sft_cuda
