// 2:4 sparse implicit-GEMM conv2d on sparse tensor cores (mma.sp m16n8k32, fp16 / bf16 in, fp32 accumulate),
// NHWC, with conv2d.cu's epilogue. Layouts and the metadata format are in sparse24.h.
//
// mma.sp takes its sparse operand as A, so the weight is A here: a block computes BM output channels × BN output
// pixels. Per K tile of BK reduction steps it stages, through one STAGES-deep cp.async ring: the kept weight values
// (BM rows × BK/2, half the dense bytes), their metadata words already in fragment order (each lane reads its own
// 32-bit word, conflict free), and the input tile, BN pixels × BK gathered from the NHWC input 16 bytes (8 channels
// of one tap) at a time with padding taps zero-filled, as conv2d.cu gathers its A tile. A compressed 16×16 A
// fragment has the dense m16n8k16 layout (ldmatrix as conv2d.cu); the 32×8 B fragment is four 8×8 matrices along
// K (one ldmatrix x4 per 8 pixels). Each mma.sp does the work of two dense m16n8k16 with half the weight traffic.
// Only CUDA headers: the torch binding lives in bindings.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/elem.cuh"
#include "../common/launch.cuh"
#include "../common/ptx.cuh"
#include "sparse24.h"

namespace sft_cuda {
namespace {

constexpr int kPad = 8;  // elements of padding per shared-memory row (16 bytes): conflict-free ldmatrix

using ptx::cp_async_16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x4;

template <typename T>
struct MmaSp;
template <>
struct MmaSp<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[4],
                                             unsigned e) {
    asm volatile("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
};
template <>
struct MmaSp<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[4],
                                             unsigned e) {
    asm volatile("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
};

template <int BM, int BN, int BK>
struct Smem {  // one stage, in elements of T (values, inputs) and words (metadata)
  static constexpr int LDA = BK / 2 + kPad, LDB = BK + kPad;
  static constexpr int A = BM * LDA, B = BN * LDB, META_WORDS = BM * BK / 16;
};

template <int BM, int BN, int BK, int STAGES>
constexpr int smem_bytes() {
  using S = Smem<BM, BN, BK>;
  return STAGES * ((S::A + S::B) * 2 + S::META_WORDS * 4);
}

template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    sparse24_kernel(const Sparse24Params p) {
  using S = Smem<BM, BN, BK>;
  constexpr int WARPS_N = BN / WN;
  constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MI = WM / 16, NI = WN / 8;  // mma tiles per warp
  constexpr int A_CHUNKS = BK / 16, B_CHUNKS = BK / 8;  // 16-byte chunks per staged row
  constexpr int A_RPP = THREADS / A_CHUNKS, B_RPP = THREADS / B_CHUNKS;
  constexpr int A_ITERS = BM / A_RPP, B_ITERS = BN / B_RPP;
  constexpr int META_CHUNKS = S::META_WORDS / 4;
  static_assert(BK % 32 == 0 && BM % 16 == 0 && WM % 16 == 0 && WN % 8 == 0, "bad tile config");
  static_assert(A_ITERS >= 1 && BM % A_RPP == 0 && B_ITERS >= 1 && BN % B_RPP == 0,
                "tile rows must split over the threads");

  extern __shared__ __align__(16) unsigned char smem[];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = As + STAGES * S::A;
  unsigned* Ms = reinterpret_cast<unsigned*>(Bs + STAGES * S::B);

  const T* x = static_cast<const T*>(p.x);
  const T* wv = static_cast<const T*>(p.wv);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const int g = blockIdx.z;
  const int n0 = blockIdx.x * BN, m0 = blockIdx.y * BM;  // pixels, output channels (within the group)
  const int npix = p.n * p.p * p.q, Kg = p.k / p.groups, cin = p.groups * p.cg;
  const int gemm_k = p.r * p.s * p.cg;
  const int k_tiles = 2 * p.a_ld / BK;
  const unsigned* meta = p.meta + ((long)g * gridDim.y + blockIdx.y) * k_tiles * S::META_WORDS;

  // Per-thread input rows (pixels): image base offset and top-left input coordinate.
  const int b_chunk = tid % B_CHUNKS, b_row0 = tid / B_CHUNKS;
  long b_base[B_ITERS];
  int b_h0[B_ITERS], b_w0[B_ITERS];
#pragma unroll
  for (int i = 0; i < B_ITERS; ++i) {
    const int m = n0 + b_row0 + i * B_RPP;
    if (m < npix) {
      const int img = m / (p.p * p.q), pq = m % (p.p * p.q);
      b_base[i] = (long)img * p.h * p.w_in * cin + (long)g * p.cg;
      b_h0[i] = (pq / p.q) * p.stride_h - p.pad_h;
      b_w0[i] = (pq % p.q) * p.stride_w - p.pad_w;
    } else {
      b_base[i] = 0;
      b_h0[i] = -(1 << 28);  // never inside the image: the row loads zeros
      b_w0[i] = 0;
    }
  }
  const int a_chunk = tid % A_CHUNKS, a_row0 = tid / A_CHUNKS;

  auto load_tile = [&](int kt, int stage) {
    T* a_dst = As + stage * S::A + a_chunk * 8;
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {  // kept values: rows past Kg load zeros
      const int row = a_row0 + i * A_RPP;
      const bool ok = m0 + row < Kg;
      const T* src = ok ? wv + (long)(g * Kg + m0 + row) * p.a_ld + kt * (BK / 2) + a_chunk * 8 : wv;
      cp_async_16(a_dst + row * S::LDA, src, ok);
    }
    for (int c = tid; c < META_CHUNKS; c += THREADS)
      cp_async_16(Ms + stage * S::META_WORDS + c * 4, meta + (long)kt * S::META_WORDS + c * 4, true);
    const int kk = kt * BK + b_chunk * 8;  // first reduction step of this thread's input chunk
    const bool k_ok = kk < gemm_k;
    const int rs = kk / p.cg, c = kk - rs * p.cg;  // Cg % 8 == 0: a chunk never straddles two taps
    const int fr = rs / p.s, fs = rs - fr * p.s;
    T* b_dst = Bs + stage * S::B + b_chunk * 8;
#pragma unroll
    for (int i = 0; i < B_ITERS; ++i) {
      const int hh = b_h0[i] + fr * p.dil_h, ww = b_w0[i] + fs * p.dil_w;
      const bool ok = k_ok && (unsigned)hh < (unsigned)p.h && (unsigned)ww < (unsigned)p.w_in;
      const T* src = ok ? x + b_base[i] + ((long)hh * p.w_in + ww) * cin + c : x;
      cp_async_16(b_dst + (b_row0 + i * B_RPP) * S::LDB, src, ok);
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

    const T* a_s = As + (kt % STAGES) * S::A;
    const T* b_s = Bs + (kt % STAGES) * S::B;
    const unsigned* m_s = Ms + (kt % STAGES) * S::META_WORDS;
#pragma unroll
    for (int k32 = 0; k32 < BK; k32 += 32) {
      unsigned a[MI][4], b[NI][4], e[MI];
#pragma unroll
      for (int i = 0; i < MI; ++i) {  // the compressed 16×16 tile: rows 0-7 / 8-15 × values 0-7 / 8-15
        const int row = warp_m * WM + i * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(a[i], a_s + row * S::LDA + k32 / 2 + (lane >> 4) * 8);
        e[i] = m_s[((warp_m * MI + i) * (BK / 32) + k32 / 32) * 32 + lane];
      }
#pragma unroll
      for (int j = 0; j < NI; ++j) {  // 8 pixels × reduction steps 0-7, 8-15, 16-23, 24-31
        const int row = warp_n * WN + j * 8 + (lane & 7);
        ldmatrix_x4(b[j], b_s + row * S::LDB + k32 + (lane >> 3) * 8);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) MmaSp<T>::run(acc[i][j], a[i], b[j], e[i]);
    }
  }
  cp_async_wait<0>();

  // Epilogue straight from the accumulators: element e of tile (i, j) is output channel row (lane/4 + 8·(e/2)),
  // pixel column (2·(lane%4) + e%2).
  const T* bias = static_cast<const T*>(p.bias);
  const T* res = static_cast<const T*>(p.residual);
  T* y = static_cast<T*>(p.y);
  // One select and one min per element (relu and relu6: slope 0, none: slope 1; relu6's bound 6, else +inf): a
  // three-way branch here made the unrolled epilogue too large, and the accumulators went to local memory.
  const float slope = p.activation == 1 || p.activation == 3 ? 0.f : (p.activation == 2 ? p.negative_slope : 1.f);
  const float hi = p.activation == 3 ? 6.f : __int_as_float(0x7f800000);
#pragma unroll
  for (int i = 0; i < MI; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int ch = m0 + warp_m * WM + i * 16 + (lane >> 2) + half * 8;
      const int kc = g * Kg + ch;
      const bool ch_ok = ch < Kg;
      const float bv = bias && ch_ok ? elem::to_f(bias[kc]) : 0.f;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int m = n0 + warp_n * WN + j * 8 + (lane & 3) * 2 + e;
          if (ch_ok && m < npix) {
            const long idx = (long)m * p.k + kc;
            float v = acc[i][j][half * 2 + e] + bv;
            v = fminf(v < 0.f ? v * slope : v, hi);
            if (res) v += elem::to_f(res[idx]);
            y[idx] = elem::from_f<T>(v);
          }
        }
      }
    }
  }
}

// The tile configs: X(BM, BN, BK, WM, WN, STAGES), in the public index order (names m<BM>_n<BN>_k<BK>_w<WM>x<WN>_s<S>:
// BM output channels, BN pixels). The metadata layout depends on BM and BK, so the packer asks for one config.
#define SFT_SPARSE24_TILE_CONFIGS(X) \
  X(64, 128, 64, 32, 64, 3)          \
  X(32, 128, 64, 32, 32, 4)          \
  X(128, 128, 64, 64, 32, 3)         \
  X(64, 64, 64, 32, 32, 4)

constexpr TileConfig kConfigs[] = {SFT_SPARSE24_TILE_CONFIGS(SFT_TILE_ENTRY)};
constexpr int kNumConfigs = sizeof(kConfigs) / sizeof(kConfigs[0]);
enum TileIndex : int { SFT_SPARSE24_TILE_CONFIGS(SFT_TILE_ENUM) kTileCount };
static_assert(kTileCount == kNumConfigs, "one index per tile config");

template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES>
cudaError_t launch(const Sparse24Params& p, cudaStream_t stream) {
  auto kernel = sparse24_kernel<T, BM, BN, BK, WM, WN, STAGES>;
  constexpr int bytes = smem_bytes<BM, BN, BK, STAGES>();
  const long npix = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  dim3 grid((unsigned)((npix + BN - 1) / BN), (unsigned)((Kg + BM - 1) / BM), (unsigned)p.groups);
  return launch_with_smem(kernel, grid, (BM / WM) * (BN / WN) * 32, bytes, p, stream);
}

template <typename T>
cudaError_t dispatch(const Sparse24Params& p, int config, cudaStream_t stream) {
  switch (config) {
#define SFT_TILE_CASE(bm, bn, bk, wm, wn, st) \
  case SFT_TILE_INDEX(bm, bn, bk, wm, wn, st): return launch<T, bm, bn, bk, wm, wn, st>(p, stream);
    SFT_SPARSE24_TILE_CONFIGS(SFT_TILE_CASE)
#undef SFT_TILE_CASE
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int sparse24_num_tile_configs() { return kNumConfigs; }

TileConfig sparse24_tile_config(int index) { return tile_config_at(kConfigs, index); }

int sparse24_choose_tile_config(const Sparse24Params& p) {
  const long npix = (long)p.n * p.p * p.q;
  const int Kg = p.k / p.groups;
  if (Kg <= 32) return kTile_m32_n128_k64_w32x32_s4;
  if (Kg > 64) return kTile_m128_n128_k64_w64x32_s3;
  // Small problems: smaller pixel tiles keep all SMs busy (an H200 has 132).
  return npix >= 128L * 264 ? kTile_m64_n128_k64_w32x64_s3 : kTile_m64_n64_k64_w32x32_s4;
}

cudaError_t sparse24_launch(const Sparse24Params& p, int config, cudaStream_t stream, const char** why) {
  auto fail = [&](const char* msg) {
    if (why) *why = msg;
    return cudaErrorInvalidValue;
  };
  if (!p.x || !p.wv || !p.meta || !p.y) return fail("x, wv, meta and y must be set");
  if (const char* e = conv_params_error(p)) return fail(e);
  if (p.cg <= 0 || p.cg % 8) return fail("channels per group must be a positive multiple of 8 (pad them)");
  if (config < 0 || config >= kNumConfigs) return fail("name the tile config the metadata was packed for");
  const TileConfig t = kConfigs[config];
  if (p.a_ld <= 0 || (2 * p.a_ld) % t.bk || 2 * p.a_ld < p.r * p.s * p.cg)
    return fail("a_ld must be half the reduction R*S*Cg padded to a multiple of the config's BK");
  if ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.wv) |
       reinterpret_cast<uintptr_t>(p.meta)) % 16)
    return fail("x, wv and meta must be 16-byte aligned");
  if (p.n <= 0 || p.p <= 0 || p.q <= 0) return cudaSuccess;  // nothing to compute
  return p.bf16 ? dispatch<__nv_bfloat16>(p, config, stream) : dispatch<__half>(p, config, stream);
}

}  // namespace sft_cuda
