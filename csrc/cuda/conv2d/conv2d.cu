// Implicit-GEMM conv2d on tensor cores (fp16 / bf16 in, fp32 accumulate), NHWC, with a fused epilogue.
//
// One thread block computes a BM × BN tile of the per-group GEMM (M = N·P·Q output pixels, N = Kg output
// channels, K = R·S·Cg). The A tile (pixels × reduction) is gathered straight from the NHWC input by
// cp.async, 16 bytes (8 channels of one filter tap) at a time; padding and out-of-range rows become zero
// fills, so no im2col buffer exists. B (weights, KRSC) is a plain 2-D tile. A STAGES-deep cp.async ring
// overlaps the loads of tile kt+STAGES-1 with the mma.sync m16n8k16 math on tile kt; ldmatrix feeds the
// fragments. With block lists (block-sparse weights: sft.sparse_conv2d), a block walks only its N tile's nonzero
// K tiles. Shared-memory rows are padded by 16 bytes so ldmatrix reads are bank-conflict free.
// Only CUDA headers: the torch binding lives in bindings.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/elem.cuh"
#include "../common/launch.cuh"
#include "../common/ptx.cuh"
#include "conv2d.h"

namespace sft_cuda {
namespace {

constexpr int kPad = 8;  // elements of padding per shared-memory row (16 bytes)

using ptx::cp_async_16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x4;

template <typename T>
struct Mma;
template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ float load(const __half* p, long i) { return __half2float(p[i]); }
  static __device__ __forceinline__ void store(__half* p, long i, float v) { p[i] = __float2half_rn(v); }
  static __device__ __forceinline__ void store2(__half* p, long i, float v0, float v1) {
    *reinterpret_cast<__half2*>(p + i) = __floats2half2_rn(v0, v1);
  }
};
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ float load(const __nv_bfloat16* p, long i) { return __bfloat162float(p[i]); }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, long i, float v) { p[i] = __float2bfloat16_rn(v); }
  static __device__ __forceinline__ void store2(__nv_bfloat16* p, long i, float v0, float v1) {
    *reinterpret_cast<__nv_bfloat162*>(p + i) = __floats2bfloat162_rn(v0, v1);
  }
};

template <int BM, int BN, int BK, int STAGES>
constexpr int smem_bytes() {
  return STAGES * (BM + BN) * (BK + kPad) * 2;
}

template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    conv2d_igemm_kernel(const Conv2dParams p) {
  constexpr int WARPS_N = BN / WN;
  constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MI = WM / 16, NI = WN / 8;  // mma tiles per warp
  constexpr int LDS = BK + kPad;
  constexpr int CHUNKS = BK / 8;  // 16-byte chunks per tile row
  constexpr int ROWS_PER_PASS = THREADS / CHUNKS;
  constexpr int A_ITERS = BM / ROWS_PER_PASS, B_ITERS = BN / ROWS_PER_PASS;
  static_assert(NI % 2 == 0 && BK % 16 == 0 && A_ITERS >= 1 && B_ITERS >= 1, "bad tile config");
  static_assert(BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0, "tile rows must split over the threads");

  extern __shared__ __align__(16) unsigned char smem[];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = As + STAGES * BM * LDS;

  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const int g = blockIdx.z;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int M = p.n * p.p * p.q, Kg = p.k / p.groups, cin = p.groups * p.cg;
  const int gemm_k = p.r * p.s * p.cg;
  // The K tiles this block walks: all of them, or (block-sparse weights) its N tile's list of nonzero ones.
  int k_tiles = (gemm_k + BK - 1) / BK;
  const int* tiles = nullptr;
  if (p.blk_ptr) {
    const int slice = g * gridDim.y + blockIdx.y;
    tiles = p.blk_idx + p.blk_ptr[slice];
    k_tiles = p.blk_ptr[slice + 1] - p.blk_ptr[slice];
  }
  const int chunk = tid % CHUNKS, row0 = tid / CHUNKS;

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
      a_h0[i] = -(1 << 28);  // never inside the image: the row loads zeros
      a_w0[i] = 0;
    }
  }

  auto load_tile = [&](int i, int stage) {  // the i-th K tile this block walks
    const int kt = tiles ? tiles[i] : i;
    const int kk = kt * BK + chunk * 8;  // first reduction index of this thread's chunk
    const bool k_ok = kk < gemm_k;
    const int rs = kk / p.cg, c = kk - rs * p.cg;  // Cg % 8 == 0: a chunk never straddles two taps
    const int fr = rs / p.s, fs = rs - fr * p.s;
    T* a_dst = As + stage * BM * LDS + chunk * 8;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
      const int hh = a_h0[i] + fr * p.dil_h, ww = a_w0[i] + fs * p.dil_w;
      const bool ok = k_ok && (unsigned)hh < (unsigned)p.h && (unsigned)ww < (unsigned)p.w_in;
      const T* src = ok ? x + a_base[i] + ((long)hh * p.w_in + ww) * cin + c : x;
      cp_async_16(a_dst + (row0 + i * ROWS_PER_PASS) * LDS, src, ok);
    }
    T* b_dst = Bs + stage * BN * LDS + chunk * 8;
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int nn = n0 + row0 + i * ROWS_PER_PASS;
      const bool ok = k_ok && nn < Kg;
      const T* src = ok ? w + (long)(g * Kg + nn) * gemm_k + kk : w;
      cp_async_16(b_dst + (row0 + i * ROWS_PER_PASS) * LDS, src, ok);
    }
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) load_tile(s, s);
    cp_async_commit();  // commit even when empty so the group count stays fixed
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // tile kt has landed (for this thread) ...
    __syncthreads();              // ... for every thread, and everyone is done with tile kt-1's stage
    const int next = kt + STAGES - 1;
    if (next < k_tiles) load_tile(next, next % STAGES);
    cp_async_commit();

    const T* a_s = As + (kt % STAGES) * BM * LDS;
    const T* b_s = Bs + (kt % STAGES) * BN * LDS;
#pragma unroll
    for (int k16 = 0; k16 < BK; k16 += 16) {
      unsigned a[MI][4], b[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int row = warp_m * WM + i * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(a[i], a_s + row * LDS + k16 + (lane >> 4) * 8);
      }
#pragma unroll
      for (int j = 0; j < NI; j += 2) {
        const int row = warp_n * WN + j * 8 + (lane & 7) + (lane >> 4) * 8;
        unsigned t[4];
        ldmatrix_x4(t, b_s + row * LDS + k16 + ((lane >> 3) & 1) * 8);
        b[j][0] = t[0];
        b[j][1] = t[1];
        b[j + 1][0] = t[2];
        b[j + 1][1] = t[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) Mma<T>::run(acc[i][j], a[i], b[j]);
    }
  }
  cp_async_wait<0>();

  // Epilogue straight from the accumulators: each thread owns pairs of adjacent output channels.
  const T* bias = static_cast<const T*>(p.bias);
  const T* res = static_cast<const T*>(p.residual);
  T* y = static_cast<T*>(p.y);
  const int r = p.shuffle, kout = p.k / (r * r);
  const bool pairs = r == 1 && Kg % 2 == 0;  // two adjacent channels are adjacent in memory and aligned
  auto finish = [&](float v, int kc, long idx) {
    if (bias) v += Mma<T>::load(bias, kc);
    if (p.activation == kRelu) v = fmaxf(v, 0.f);
    else if (p.activation == kLeakyRelu) v = v > 0.f ? v : v * p.negative_slope;
    else if (p.activation == kRelu6) v = fminf(fmaxf(v, 0.f), 6.f);
    else if (p.activation >= kSilu) v = elem::activate(v, p.activation, p.negative_slope);  // silu, hardswish, gelu
    if (res) v += Mma<T>::load(res, idx);
    return v;
  };
#pragma unroll
  for (int i = 0; i < MI; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + warp_m * WM + i * 16 + (lane >> 2) + half * 8;
      if (m >= M) continue;
      const int img = m / (p.p * p.q), pq = m % (p.p * p.q), pp = pq / p.q, qq = pq % p.q;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int nn = n0 + warp_n * WN + j * 8 + (lane & 3) * 2;
        const float v0 = acc[i][j][half * 2], v1 = acc[i][j][half * 2 + 1];
        if (pairs) {
          if (nn >= Kg) continue;
          const int kc = g * Kg + nn;
          const long idx = (long)m * p.k + kc;
          Mma<T>::store2(y, idx, finish(v0, kc, idx), finish(v1, kc + 1, idx + 1));
          continue;
        }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (nn + e >= Kg) continue;
          const int kc = g * Kg + nn + e;
          const int ch = kc / (r * r), sub = kc % (r * r);
          const long idx = (((long)img * p.p * r + pp * r + sub / r) * p.q * r + qq * r + sub % r) * kout + ch;
          Mma<T>::store(y, idx, finish(e ? v1 : v0, kc, idx));
        }
      }
    }
  }
}

// The tile configs: X(BM, BN, BK, WM, WN, STAGES) each, in the public index order (sft_kernels.cuda_conv lists
// them by name, m<BM>_n<BN>_k<BK>_w<WM>x<WN>_s<STAGES>). The one list: the table, the dispatch and the names the
// heuristic uses all expand from it.
#define SFT_CONV2D_TILE_CONFIGS(X) \
  X(128, 64, 32, 64, 32, 4)        \
  X(128, 128, 32, 64, 32, 3)       \
  X(64, 64, 32, 32, 32, 4)         \
  X(128, 32, 32, 32, 32, 4)        \
  X(128, 64, 64, 64, 32, 3)

constexpr TileConfig kConfigs[] = {SFT_CONV2D_TILE_CONFIGS(SFT_TILE_ENTRY)};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);
// Each config's index by name (kTile_m128_n64_k32_w64x32_s4, ...), for the dispatch and the heuristic.
enum TileIndex : int { SFT_CONV2D_TILE_CONFIGS(SFT_TILE_ENUM) kTileCount };
static_assert(kTileCount == kNumConfigs, "one index per tile config");

template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES>
cudaError_t launch(const Conv2dParams& p, cudaStream_t stream) {
  auto kernel = conv2d_igemm_kernel<T, BM, BN, BK, WM, WN, STAGES>;
  constexpr int bytes = smem_bytes<BM, BN, BK, STAGES>();
  const long M = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  dim3 grid((unsigned)((M + BM - 1) / BM), (unsigned)((Kg + BN - 1) / BN), (unsigned)p.groups);
  return launch_with_smem(kernel, grid, (BM / WM) * (BN / WN) * 32, bytes, p, stream);
}

template <typename T>
cudaError_t dispatch(const Conv2dParams& p, int config, cudaStream_t stream) {
  switch (config) {
#define SFT_TILE_CASE(bm, bn, bk, wm, wn, st) \
  case SFT_TILE_INDEX(bm, bn, bk, wm, wn, st): return launch<T, bm, bn, bk, wm, wn, st>(p, stream);
    SFT_CONV2D_TILE_CONFIGS(SFT_TILE_CASE)
#undef SFT_TILE_CASE
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int num_tile_configs() { return kNumConfigs; }

TileConfig tile_config(int index) { return tile_config_at(kConfigs, index); }

int choose_tile_config(const Conv2dParams& p) {
  const long M = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  if (Kg <= 32) return kTile_m128_n32_k32_w32x32_s4;
  if (Kg > 64) return kTile_m128_n128_k32_w64x32_s3;
  // Small problems: smaller M tiles keep all SMs busy (an H200 has 132).
  return M >= 128L * 264 ? kTile_m128_n64_k32_w64x32_s4 : kTile_m64_n64_k32_w32x32_s4;
}

cudaError_t conv2d_launch(const Conv2dParams& p, int config, cudaStream_t stream, const char** why) {
  auto fail = [&](const char* msg) {
    if (why) *why = msg;
    return cudaErrorInvalidValue;
  };
  if (!p.x || !p.w || !p.y) return fail("x, w and y must be set");
  if (const char* e = conv_params_error(p)) return fail(e);
  if (p.cg <= 0 || p.cg % 8) return fail("channels per group must be a positive multiple of 8 (pad them)");
  if (p.shuffle < 1 || p.k % (p.shuffle * p.shuffle)) return fail("shuffle^2 must divide k");
  if ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.w)) % 16)
    return fail("x and w must be 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(p.y) % 4) return fail("y must be 4-byte aligned (paired stores)");
  if (p.n <= 0 || p.p <= 0 || p.q <= 0) return cudaSuccess;  // nothing to compute
  if (config < 0) config = choose_tile_config(p);
  if (config >= kNumConfigs) return fail("no such tile config");
  return p.dtype == DType::kHalf ? dispatch<__half>(p, config, stream) : dispatch<__nv_bfloat16>(p, config, stream);
}

}  // namespace sft_cuda
