// The AMX block of the int8 conv: 32 output pixels × 32 output channels in four 16×16 int32 tiles.
//
// A tile row is one pixel's 64 channels (bytes) at one tap, read in place from the padded NHWC input: the 16 pixels
// of a tile sit at a fixed pitch (stride·channels), so tileloadd gathers the implicit-GEMM A operand with no im2col.
// B tiles are the packed panel's rows as they are ([tap][C/4][32][4]: 16 rows of C/4 per chunk, 64 bytes = 16 output
// channels × 4 per row, at a pitch of 128 bytes), so the VNNI packing serves both kernels with channels rounded to 64
// (or to 32: convs of 16-32 channels, SFTNet's SFT layers, run in 32-byte chunks instead of half-zero 64-byte ones).
// Each (tap, chunk) step loads 2 A and 2 B tiles for 4 tdpbusd (16×16×64 multiply-adds each, ×32 for 32-byte chunks).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

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

__attribute__((target("amx-tile"))) void amx_configure(int chunk) {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // A chunk of 32 channels: A tiles are 16 pixels × 32 bytes, B tiles 8 rows of 4-channel groups.
  cfg.colsb[4] = cfg.colsb[5] = static_cast<uint16_t>(chunk);
  cfg.rows[6] = cfg.rows[7] = static_cast<uint8_t>(chunk / 4);
  // GCC 12 does not see _tile_loadconfig read the struct and drops the stores to it: an asm with a memory operand.
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

__attribute__((target("amx-tile"))) void amx_release() { _tile_release(); }

__attribute__((target("amx-tile,amx-int8"))) void block_amx(const uint8_t* a, int64_t pitch, const int64_t* toff,
                                                            int64_t ntaps, int64_t chunks, int chunk,
                                                            const int8_t* b) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const uint8_t* a1 = a + 16 * pitch;
  const int8_t* bp = b;
  for (int64_t t = 0; t < ntaps; ++t) {
    const int64_t to = toff[t];
    for (int64_t ch = 0; ch < chunks; ++ch, bp += chunk / 4 * kNR * 4) {
      _tile_loadd(4, a + to + chunk * ch, pitch);
      _tile_loadd(5, a1 + to + chunk * ch, pitch);
      _tile_loadd(6, bp, kNR * 4);
      _tile_loadd(7, bp + 64, kNR * 4);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
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
