// A C++ caller of the extension's sft::depthwise_rows (3×3 / 5×5 / 7×7, stride 1 or 2) for depthwise_shim.py.
#include <chrono>
#include <vector>
#include <algorithm>
#include "cpu/conv2d/paths.h"
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
extern "C" double bench_ext(int C, int H, int reps, float* x, float* y, int R, int SW) {
  int W = H;
  std::vector<float> wt(R * R * C, 0.5f), b(C, 0.1f);
  sft::DepthwiseRows g{};
  g.xs1 = 1; g.xs2 = W * C; g.xs3 = C; g.h = H; g.w = W; g.c = C; g.cm = C; g.r = R; g.s = R; g.sh = SW; g.sw = SW;
  g.ph = R / 2; g.pw = R / 2; g.dh = 1; g.dw = 1; g.wt = wt.data(); g.bias = b.data(); g.act = 0; g.slope = 0; g.vector = true;
  std::vector<double> t;
  for (int k = 0; k < reps; ++k) {
    double t0 = now();
    const int64_t PO = (H + 2 * (R / 2) - R) / SW + 1; for (int64_t p = 0; p < PO; ++p)
      for (int64_t q0 = 0; q0 < PO; q0 += 14)
        sft::depthwise_rows(g, x, p, q0, (int)std::min<int64_t>(14, W - q0), y + (p * W + q0) * C, C, nullptr, C);
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
