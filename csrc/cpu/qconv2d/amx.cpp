// The AMX block of the int8 conv: 32 output pixels × 32 output channels in four 16×16 int32 tiles.
//
// A tile row is one pixel's 64 channels (bytes) at one tap, read in place from the padded NHWC input: the 16 pixels
// of a tile sit at a fixed pitch (stride·channels), so tileloadd gathers the implicit-GEMM A operand with no im2col.
// B tiles are the packed panel's rows as they are ([tap][C/4][32][4]: 16 rows of C/4 per chunk, 64 bytes = 16 output
// channels × 4 per row, at a pitch of 128 bytes), so the VNNI packing serves both kernels with channels rounded to 64.
// Each (tap, chunk) step loads 2 A and 2 B tiles for 4 tdpbusd (16×16×64 multiply-adds each).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "cpu/qconv2d/store_avx512.h"
#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

namespace {

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

}  // namespace

bool amx_enable() {
  static const bool ok = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, ...)
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

__attribute__((target("amx-tile"))) void amx_configure() {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC 12 does not see _tile_loadconfig read the struct and drops the stores to it: an asm with a memory operand.
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

__attribute__((target("amx-tile"))) void amx_release() { _tile_release(); }

// A store job's constants: the two 16-channel halves of a panel.
struct JobConsts {
  Epi e;
  __m512i comp[2];
  __m512 mult[2], bias[2];
  __mmask16 mask[2];
  int halves;
};

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline JobConsts job_consts(const StoreJob& job) {
  JobConsts c;
  c.e = epi_of(job.s);
  c.halves = job.ncols > 16 ? 2 : 1;
  for (int h = 0; h < c.halves; ++h) {
    const int64_t jj = job.j0 + 16 * h;
    c.mask[h] = tail_mask(job.ncols - 16 * h);
    c.comp[h] = _mm512_loadu_si512(job.s.comp + jj);
    channel_consts(job.s, c.e, jj, &c.mult[h], &c.bias[h]);
  }
  return c;
}

// Items [k0, k1) of a job: item k is pixel k / halves, half k % halves.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void store_items(const StoreJob& job, const JobConsts& c,
                                                                              int k0, int k1) {
  for (int k = k0; k < k1; ++k) {
    const int i = k / c.halves, h = k % c.halves;
    store16(_mm512_loadu_si512(job.acc + i * kNR + 16 * h), i, 16 * h, c.mask[h], c.comp[h], c.mult[h], c.bias[h],
            c.e);
  }
}

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl"))) void block_amx(
    const uint8_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks, const int8_t* b,
    const StoreJob* job) {
  JobConsts c;
  int items = 0, done = 0, per_step = 0;
  if (job) {
    c = job_consts(*job);
    items = job->mr * c.halves;
    per_step = static_cast<int>((items + ntaps * chunks - 1) / (ntaps * chunks));
  }
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const uint8_t* a1 = a + 16 * pitch;
  const int8_t* bp = b;
  for (int64_t t = 0; t < ntaps; ++t) {
    const int64_t to = toff[t];
    for (int64_t ch = 0; ch < chunks; ++ch, bp += 16 * kNR * 4) {
      _tile_loadd(4, a + to + 64 * ch, pitch);
      _tile_loadd(5, a1 + to + 64 * ch, pitch);
      _tile_loadd(6, bp, kNR * 4);
      _tile_loadd(7, bp + 64, kNR * 4);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
      if (done < items) {  // a slice of the previous block's store, while these multiplies run
        const int next = done + per_step < items ? done + per_step : items;
        store_items(*job, c, done, next);
        done = next;
      }
    }
  }
}

__attribute__((target("amx-tile"))) void block_amx_store(int32_t* acc) {
  _tile_stored(0, acc, kNR * 4);
  _tile_stored(1, acc + 16, kNR * 4);
  _tile_stored(2, acc + 16 * kNR, kNR * 4);
  _tile_stored(3, acc + 16 * kNR + 16, kNR * 4);
}

}  // namespace sft::qconv
