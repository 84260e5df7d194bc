// Packing a conv weight's nonzeros for the sparse conv (layout: tiles.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/sparse_conv2d/sparse_conv2d.h"
#include "cpu/sparse_conv2d/tiles.h"

namespace sft {

using namespace sparse;

namespace {

// Whether blocks of 4 output channels pay: the positions where any channel of an aligned group of 4 is nonzero,
// times 4, hold at most 1/8 more values than the nonzeros themselves (a weight pruned in blocks of 4 has none
// more; an unstructured one at 50 % has ~1.9x as many).
bool blocks_pay(const float* w, int64_t K, int64_t T) {
  int64_t nnz = 0, union_count = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 4)
    for (int64_t t = 0; t < T; ++t) {
      bool any = false;
      for (int64_t k = k0; k < std::min(K, k0 + 4); ++k) {
        const bool nz = w[k * T + t] != 0.f;
        nnz += nz;
        any |= nz;
      }
      union_count += any;
    }
  return nnz > 0 && 4 * union_count * 8 <= nnz * 9;
}

}  // namespace

namespace sparse {

void group_taps(const int32_t* hdr, int64_t cpc, int64_t U, int vw, std::vector<TapGroup>& groups,
                std::vector<int32_t>& ranges) {
  constexpr int64_t R = 3, S = 3;
  const int64_t nkb = hdr[kFNkb], ng = hdr[kFNg], gpc = cpc / kPackChannels, nchunks = (ng + gpc - 1) / gpc;
  const int32_t* ptr = hdr + kHeader;
  const int32_t* codes = ptr + nkb * ng + 1;
  const float* vals = reinterpret_cast<const float*>(codes + hdr[kFNnzb]);
  groups.clear();
  ranges.assign(nchunks * nkb * kGroupRanges, 0);
  std::vector<TapGroup> col(cpc * S);  // per (c, s) of the chunk, valid where its mask is nonzero
  std::vector<int> mask(cpc * S);
  for (int64_t ci = 0; ci < nchunks; ++ci)
    for (int64_t k = 0; k < nkb; ++k) {
      std::fill(mask.begin(), mask.end(), 0);
      const int64_t n0 = ptr[k * ng + ci * gpc], n1 = ptr[k * ng + std::min(ng, (ci + 1) * gpc)];
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t local = codes[n] % (cpc * R * S), c = local / (R * S), r = local / S % R, s = local % S;
        TapGroup& g = col[c * S + s];
        if (!mask[c * S + s]) g = TapGroup{static_cast<int32_t>((c * U * S + s) * vw), {0.f, 0.f, 0.f}};
        g.w[r] = vals[n];
        mask[c * S + s] |= 1 << r;
      }
      int32_t* rg = ranges.data() + (ci * nkb + k) * kGroupRanges;
      rg[0] = static_cast<int32_t>(groups.size());
      for (int m = 1; m <= 7; ++m) {
        for (int64_t j = 0; j < cpc * S; ++j)
          if (mask[j] == m) groups.push_back(col[j]);
        rg[m] = static_cast<int32_t>(groups.size());
      }
    }
}

}  // namespace sparse

at::Tensor sparse_conv2d_pack(const at::Tensor& weight, int64_t groups, int64_t block) {
  TORCH_CHECK(weight.dim() == 4 && weight.scalar_type() == at::kFloat,
              "sft_cpu::sparse_conv2d_pack: weight must be float32 (K, C/groups, R, S)");
  TORCH_CHECK(block == 0 || block == 1 || block == 4, "sft_cpu::sparse_conv2d_pack: block must be 0 (auto), 1 or 4");
  const int64_t K = weight.size(0), Cg = weight.size(1), R = weight.size(2), S = weight.size(3);
  TORCH_CHECK(groups >= 1 && K % groups == 0, "sft_cpu::sparse_conv2d_pack: groups must divide the output channels");
  const int64_t C = Cg * groups, Kg = K / groups, T = Cg * R * S;
  TORCH_CHECK(C * R * S < (int64_t(1) << 31), "sft_cpu::sparse_conv2d_pack: weight too large");
  const at::Tensor wc = weight.contiguous();
  const float* w = wc.data_ptr<float>();
  const int KB = block != 0 ? static_cast<int>(block) : (blocks_pay(w, K, T) ? 4 : 1);
  const int64_t nkb = (K + KB - 1) / KB, ng = (C + kPackChannels - 1) / kPackChannels;

  // Per (output block, channel group): its positions (tap codes, ascending) and KB values each.
  std::vector<int32_t> ptr(nkb * ng + 1, 0), codes;
  std::vector<float> vals;
  int64_t nnz = 0;
  for (int64_t kb = 0; kb < nkb; ++kb) {
    for (int64_t g = 0; g < ng; ++g) {
      for (int64_t c = g * kPackChannels; c < std::min(C, (g + 1) * kPackChannels); ++c)
        for (int64_t rs = 0; rs < R * S; ++rs) {
          float v[4] = {0.f, 0.f, 0.f, 0.f};
          bool any = false;
          for (int b = 0; b < KB; ++b) {
            const int64_t k = kb * KB + b;
            if (k >= K || c / Cg != k / Kg) continue;  // padding channel, or c outside k's group
            v[b] = w[k * T + (c % Cg) * R * S + rs];
            any |= v[b] != 0.f;
            nnz += v[b] != 0.f;
          }
          if (!any) continue;
          codes.push_back(static_cast<int32_t>(c * R * S + rs));
          vals.insert(vals.end(), v, v + KB);
        }
      TORCH_CHECK(codes.size() < (size_t(1) << 31), "sft_cpu::sparse_conv2d_pack: weight too large");
      ptr[kb * ng + g + 1] = static_cast<int32_t>(codes.size());
    }
  }
  const int64_t nnzb = static_cast<int64_t>(codes.size());
  std::vector<int32_t> base(kHeader + nkb * ng + 1 + nnzb + nnzb * KB, 0);
  int32_t* o = base.data();
  o[kFMagic] = kMagic;
  o[kFK] = static_cast<int32_t>(K);
  o[kFC] = static_cast<int32_t>(C);
  o[kFR] = static_cast<int32_t>(R);
  o[kFS] = static_cast<int32_t>(S);
  o[kFKB] = KB;
  o[kFNkb] = static_cast<int32_t>(nkb);
  o[kFNg] = static_cast<int32_t>(ng);
  o[kFNnzb] = static_cast<int32_t>(nnzb);
  o[kFNnz] = static_cast<int32_t>(nnz);
  o[kFGroups] = static_cast<int32_t>(groups);
  std::memcpy(o + kHeader, ptr.data(), ptr.size() * sizeof(int32_t));
  std::memcpy(o + kHeader + ptr.size(), codes.data(), codes.size() * sizeof(int32_t));
  std::memcpy(o + kHeader + ptr.size() + nnzb, vals.data(), vals.size() * sizeof(float));
  // An unstructured 3×3 weight's tap groups for this process's tiles (tiles.h), built once here, not per call.
  std::vector<TapGroup> tap_groups;
  std::vector<int32_t> ranges;
  const SparseKernels& ks = sparse_kernels();
  if (KB == 1 && R == 3 && S == 3 && ks.grouped) {
    const int64_t U = ks.rb1 + 2;  // the rows a tile reads at stride 1
    o[kFTapGroups] = static_cast<int32_t>(chunk_channels(U, S, ks.vw));
    o[kFGroupRows] = ks.rb1;
    o[kFGroupVw] = ks.vw;
    group_taps(o, o[kFTapGroups], U, ks.vw, tap_groups, ranges);
  }
  static_assert(sizeof(TapGroup) == 4 * sizeof(int32_t), "a tap group is 4 words");
  at::Tensor out = at::empty({static_cast<int64_t>(base.size() + ranges.size() + 4 * tap_groups.size())},
                             weight.options().dtype(at::kInt));
  int32_t* d = out.data_ptr<int32_t>();
  std::memcpy(d, base.data(), base.size() * sizeof(int32_t));
  std::memcpy(d + base.size(), ranges.data(), ranges.size() * sizeof(int32_t));
  std::memcpy(d + base.size() + ranges.size(), tap_groups.data(), tap_groups.size() * sizeof(TapGroup));
  return out;
}

std::vector<int64_t> sparse_conv2d_info(const at::Tensor& packed) {
  TORCH_CHECK(packed.dim() == 1 && packed.scalar_type() == at::kInt && packed.numel() >= kHeader &&
                  packed.data_ptr<int32_t>()[kFMagic] == kMagic,
              "sft_cpu::sparse_conv2d: not a packed weight from sparse_conv2d_pack");
  const int32_t* h = packed.data_ptr<int32_t>();
  int64_t tap_groups = 0;  // the groups the 3×3 tiles run (tiles.h), 0 where the weight has none
  if (h[kFTapGroups] > 0) {
    const int64_t nkb = h[kFNkb], ng = h[kFNg], gpc = h[kFTapGroups] / kPackChannels;
    tap_groups = h[kHeader + nkb * ng + 1 + h[kFNnzb] * (1 + h[kFKB]) + (ng + gpc - 1) / gpc * nkb * kGroupRanges - 1];
  }
  return {h[kFNnz], h[kFNnzb], h[kFKB], tap_groups};
}

}  // namespace sft
