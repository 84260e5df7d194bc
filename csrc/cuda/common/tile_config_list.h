// The bindings' text form of a kernel's tile configs (host only): "name:BM,BN,BK,WM,WN,STAGES" per config, in index
// order, which sft_kernels/ops/conv2d/cuda.py's tile_configs() parses.
#pragma once

#include <string>
#include <vector>

#include "tile_config.h"

namespace sft_cuda {

inline std::vector<std::string> describe_tile_configs(int count, TileConfig (*config)(int)) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    const TileConfig c = config(i);
    out.push_back(std::string(c.name) + ":" + std::to_string(c.bm) + "," + std::to_string(c.bn) + "," +
                  std::to_string(c.bk) + "," + std::to_string(c.wm) + "," + std::to_string(c.wn) + "," +
                  std::to_string(c.stages));
  }
  return out;
}

}  // namespace sft_cuda
