// The tile configurations of the tensor-core kernels (conv2d.cu, qconv2d.cu, sparse24.cu): one struct, and the macros
// that expand a kernel's X-macro list — X(BM, BN, BK, WM, WN, STAGES) per config — into its table of named configs
// and its index enum (kTile_m<BM>_n<BN>_k<BK>_w<WM>x<WN>_s<STAGES>, used by the dispatch switch and the heuristic).
// Each kernel keeps its own list in its .cu file, inside an anonymous namespace, so the index names never clash.
// CUDA-free: included by the kernels and by their bindings.
#pragma once

namespace sft_cuda {

// BM×BN×BK block tile, WM×WN warp tile, pipeline stages; name "m<BM>_n<BN>_k<BK>_w<WM>x<WN>_s<STAGES>".
struct TileConfig {
  const char* name;
  int bm, bn, bk, wm, wn, stages;
};

// table[index], or a config with a null name and zero sizes for an index outside the table.
template <int N>
constexpr TileConfig tile_config_at(const TileConfig (&table)[N], int index) {
  return (index >= 0 && index < N) ? table[index] : TileConfig{nullptr, 0, 0, 0, 0, 0, 0};
}

}  // namespace sft_cuda

#define SFT_TILE_ENTRY(bm, bn, bk, wm, wn, st) \
  {"m" #bm "_n" #bn "_k" #bk "_w" #wm "x" #wn "_s" #st, bm, bn, bk, wm, wn, st},
#define SFT_TILE_INDEX(bm, bn, bk, wm, wn, st) kTile_m##bm##_n##bn##_k##bk##_w##wm##x##wn##_s##st
#define SFT_TILE_ENUM(bm, bn, bk, wm, wn, st) SFT_TILE_INDEX(bm, bn, bk, wm, wn, st),
