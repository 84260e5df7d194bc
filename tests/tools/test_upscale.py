"""`sft_kernels.tools.upscale` and `sft-kernels upscale`: tiled == untiled, any size, greyscale / RGBA / 16-bit
files keep their kind, shipped names and checkpoint paths, and every user error is one clear line."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sft_kernels import backends
from sft_kernels.tools import cli
from sft_kernels.train import export as weights
from sft_kernels.models import pretrained as shipped_weights
from sft_kernels import nn as sft_nn
from sft_kernels.models import SFTNet
from sft_kernels.tools.upscale import load_model, receptive_radius, tile_grid, upscale_file, upscale_image
from sft_kernels.testing import tol

TINY = {"variant": "pytorch", "num_blocks": 1, "channels": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these runs are tiny, and on a loaded 2-core box OpenMP oversubscription costs 10x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(variant="pytorch", seed=0):
    return SFTNet(variant, num_blocks=1, channels=8).reset_parameters_(seed).eval()


@pytest.fixture
def shipped_tiny(tmp_path, monkeypatch):
    """A shipped model named "tiny" (safetensors + card) in a temporary WEIGHTS_DIR."""
    wdir = tmp_path / "weights"
    model = tiny(seed=1)
    with torch.no_grad():
        model.HR_branch[-1].bias.add_(0.5)  # outputs around mid-grey, so every level test means something
    weights.export(model, "tiny", {"architecture": dict(TINY), "note": "test"}, directory=wdir)
    monkeypatch.setattr(shipped_weights, "WEIGHTS_DIR", wdir)
    return model, wdir


def save(arr, path, mode=None):
    im = Image.fromarray(arr) if mode is None else Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr.tobytes())
    im.save(path)
    return path


def run_cli(capsys, *argv):
    rc = cli.main(["upscale", *map(str, argv)])
    return rc, capsys.readouterr()


# ------------------------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("variant", ["pytorch", "torch"])
@pytest.mark.parametrize("size,tile", [((37, 29), 10), ((13, 9), 64), ((20, 33), 7), ((1, 5), 2)])
def test_tiled_equals_untiled(variant, size, tile):
    model = tiny(variant, seed=3)
    img = torch.rand(3, *size)
    ref = upscale_image(model, img)  # tile=0: the whole image in one pass
    assert ref.shape == (3, 4 * size[0], 4 * size[1])
    radius = receptive_radius(model)
    assert radius == 6
    out = upscale_image(model, img, tile=tile, overlap=radius, progress=False)
    assert out.shape == ref.shape and out.dtype == img.dtype
    torch.testing.assert_close(out, ref, **tol("fp32_pointwise"))


def test_overlap_matters_below_the_receptive_field():
    model, img = tiny(seed=3), torch.rand(3, 37, 29)
    ref = upscale_image(model, img)
    err = [(upscale_image(model, img, tile=10, overlap=ov, progress=False) - ref).abs().max().item()
           for ov in (0, 3, 6)]
    assert err[0] > 1e-3 and err[0] > err[1] > err[2] and err[2] < 1e-5


def test_tiled_with_converted_backend():
    backend = "cpu" if "cpu" in backends.available() else "reference"
    model, img = tiny(seed=4), torch.rand(3, 31, 22)
    ref = upscale_image(model, img)  # eager PyTorch
    out = upscale_image(model, img, tile=9, overlap=8, backend=backend, progress=False)
    torch.testing.assert_close(out, ref, atol=tol("fp32")["atol"] * max(1.0, ref.abs().max().item()), rtol=0)
    assert not any(isinstance(m, sft_nn.Conv2d) for m in model.modules())  # the caller's model is left alone


def test_one_bounded_tile_at_a_time():
    model, img = tiny(seed=5), torch.rand(3, 50, 41)
    seen = []
    model.conv0.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    upscale_image(model, img, tile=16, overlap=4, progress=False)
    assert len(seen) == len(tile_grid(50, 41, 16)) == 4 * 3
    assert all(s[0] == 1 and s[2] <= 16 + 2 * 4 and s[3] <= 16 + 2 * 4 for s in seen)


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (3, 5)])
def test_tiny_images_keep_their_colour(size):
    """An image (or tile) under MIN_SIDE pixels is edge-replicated for the pass: a flat grey stays grey (the convs'
    zero padding had taken a 1×1 image to a fifth of its value with the shipped student)."""
    model = shipped_weights.pretrained("student").eval()
    img = torch.full((3, *size), 0.5)
    y = upscale_image(model, img, progress=False)
    assert y.shape == (3, 4 * size[0], 4 * size[1]) and (y - 0.5).abs().max() < 0.02
    tiled = upscale_image(model, torch.full((3, 9, 9), 0.5), tile=1, overlap=0, progress=False)
    assert (tiled - 0.5).abs().max() < 0.02


def test_tile_grid_covers_evenly():
    assert tile_grid(5, 7, 0) == [(0, 5, 0, 7)]
    assert tile_grid(5, 7, 100) == [(0, 5, 0, 7)]
    grid = tile_grid(333, 517, 128)
    cover = np.zeros((333, 517), int)
    for y0, y1, x0, x1 in grid:
        assert 0 < y1 - y0 <= 128 and 0 < x1 - x0 <= 128
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all() and len(grid) == 3 * 5
    assert {y1 - y0 for y0, y1, _, _ in grid} == {111}  # equal parts, no thin sliver at the edge
    with pytest.raises(ValueError, match="tile"):
        tile_grid(5, 5, -1)


def test_upscale_image_bad_arguments():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        upscale_image(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        upscale_image(model, torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="overlap"):
        upscale_image(model, torch.rand(3, 8, 8), tile=4, overlap=-1)
    with pytest.raises(ValueError, match="backend"):
        upscale_image(model, torch.rand(3, 8, 8), backend="nope")


# ------------------------------------------------------------------------------------------- files
def test_cli_odd_size_photo(tmp_path, shipped_tiny, capsys):
    from sft_kernels.data import load_image

    model, _ = shipped_tiny
    photo = load_image("coffee")[:, 30:30 + 333, 41:41 + 517]  # 400x600 photo -> odd 333x517 crop
    assert photo.shape == (3, 333, 517)
    arr = (photo * 255).round().byte().permute(1, 2, 0).numpy()
    src = save(arr, tmp_path / "crop.png")
    out = tmp_path / "crop_x4.png"
    rc, io = run_cli(capsys, src, "-o", out, "--model", "tiny", "--tile", "128")
    assert rc == 0, io.err
    assert "wrote" in io.out and "15 tile(s)" in io.out
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (4 * 517, 4 * 333)
        got = np.asarray(im).astype(int)
    ref = upscale_image(model, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    ref = (ref.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - ref).max() <= 1  # tiles assembled in place (rounding may flip one level)


@pytest.mark.skipif(not __import__("sft_kernels").backends.bf16_available(), reason="no AMX-BF16 or AVX512-BF16 here")
def test_cli_bf16(tmp_path, shipped_tiny, capsys):
    """--fp32-precision bf16: the convs in bf16, the picture within a few levels of the float32 one."""
    model, _ = shipped_tiny
    arr = (torch.rand(40, 52, 3) * 255).byte().numpy()
    src = save(arr, tmp_path / "in.png")
    outs = {}
    for prec in ("ieee", "bf16"):
        out = tmp_path / f"{prec}.png"
        rc, io = run_cli(capsys, src, "-o", out, "--model", "tiny", "--fp32-precision", prec)
        assert rc == 0, io.err
        with Image.open(out) as im:
            outs[prec] = np.asarray(im).astype(int)
    diff = np.abs(outs["bf16"] - outs["ieee"])
    assert diff.max() <= 4 and diff.mean() < 0.5


def test_default_output_name_and_checkpoint_paths(tmp_path, capsys):
    model = tiny(seed=2)
    st = weights.export(model, "ck", {"architecture": dict(TINY)}, directory=tmp_path)
    pth = tmp_path / "ck.pth"
    torch.save({"state_dict": model.state_dict()}, pth)
    src = save(np.random.default_rng(0).integers(0, 256, (11, 14, 3), dtype=np.uint8), tmp_path / "a.jpg")
    outs = []
    for ckpt in (st, pth):
        rc, io = run_cli(capsys, src, "--model", ckpt, "--backend", "torch", "--no-progress")
        assert rc == 0, io.err
        with Image.open(tmp_path / "a_x4.png") as im:
            assert im.size == (56, 44) and im.mode == "RGB"
            outs.append(np.asarray(im))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert load_model(st).num_blocks == 1 and load_model(str(pth)).channels == 8


def test_greyscale_stays_greyscale(tmp_path, shipped_tiny, capsys):
    rng = np.random.default_rng(1)
    cases = {
        "L": (rng.integers(0, 256, (9, 13), dtype=np.uint8), "L", (52, 36)),
        "I;16": (rng.integers(0, 65536, (9, 13), dtype=np.uint16).astype("<u2"), "I;16", (52, 36)),
        "LA": (rng.integers(0, 256, (9, 13, 2), dtype=np.uint8), "LA", (52, 36)),
    }
    model, _ = shipped_tiny
    for name, (arr, mode, size) in cases.items():
        src = save(arr, tmp_path / f"g_{name.replace(';', '')}.png", mode)
        out = tmp_path / f"o_{name.replace(';', '')}.png"
        rc, io = run_cli(capsys, src, "-o", out, "--model", "tiny", "--backend", "torch", "--tile", "5")
        assert rc == 0, io.err
        with Image.open(out) as im:
            assert im.size == size
            assert im.mode == mode or (mode == "I;16" and im.mode.startswith("I")), (name, im.mode)
            got = np.asarray(im).astype(np.int64)
        # Expected: the luma of the model's output for the 3-channel replica, at the input's bit depth.
        top = 65535 if mode == "I;16" else 255
        grey = torch.from_numpy((arr[..., 0] if mode == "LA" else arr).astype(np.float32) / top)
        sr = upscale_image(model, grey.expand(3, -1, -1).contiguous())
        luma = (sr * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0).clamp(0, 1)
        want = (luma * top).round().numpy().astype(np.int64)
        diff = np.abs((got[..., 0] if mode == "LA" else got) - want)
        assert diff.max() <= (4 if top > 255 else 1), name
        assert top == 255 or got.max() > 255  # 16-bit data uses the 16-bit range
    # An 8-bit-only format gets the 8-bit greyscale image.
    rc, io = run_cli(capsys, tmp_path / "g_I16.png", "-o", tmp_path / "o.jpg", "--model", "tiny",
                     "--backend", "torch")
    assert rc == 0, io.err
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.mode == "L" and im.size == (52, 36)
    # a float TIFF in [0, 1] (Pillow's convert had clipped it to a black image) comes out as 16-bit grey
    flat = np.linspace(0.2, 0.8, 9 * 13, dtype=np.float32).reshape(9, 13)
    Image.fromarray(flat, mode="F").save(tmp_path / "f.tif")
    rc, io = run_cli(capsys, tmp_path / "f.tif", "-o", tmp_path / "f.png", "--model", "tiny", "--backend", "torch")
    assert rc == 0, io.err
    with Image.open(tmp_path / "f.png") as im:
        got = np.asarray(im).astype(np.float64) / 65535
    assert im.mode.startswith("I") and im.size == (52, 36) and 0.1 < got.mean() < 0.9


def test_rgba_keeps_alpha(tmp_path, shipped_tiny, capsys):
    h, w = 12, 16
    rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip(xx * 17, 0, 255).astype(np.uint8)
    alpha[:4] = 0  # fully transparent band
    alpha[-4:] = 255  # opaque band
    src = save(np.dstack([rgb, alpha]), tmp_path / "rgba.png")
    out = tmp_path / "rgba_x4.png"
    rc, io = run_cli(capsys, src, "-o", out, "--model", "tiny", "--tile", "6")
    assert rc == 0, io.err
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (4 * w, 4 * h)
        a = np.asarray(im)[:, :, 3].astype(int)
    nearest = np.kron(alpha.astype(int), np.ones((4, 4), int))
    assert np.abs(a - nearest).mean() < 8  # alpha preserved (bicubic vs nearest differ only at edges)
    assert (a[2:14] == 0).all() and (a[-14:-2] == 255).all()
    # A format without alpha is refused before any work, with a clear reason.
    rc, io = run_cli(capsys, src, "-o", tmp_path / "rgba.jpg", "--model", "tiny")
    assert rc == 1 and "alpha" in io.err


def test_palette_and_cmyk_become_rgb(tmp_path, shipped_tiny):
    rgb = Image.fromarray(np.random.default_rng(3).integers(0, 256, (7, 9, 3), dtype=np.uint8))
    for mode in ("P", "CMYK"):
        src = tmp_path / f"{mode}.{'png' if mode == 'P' else 'jpg'}"
        rgb.convert(mode).save(src)
        info = upscale_file(src, tmp_path / f"{mode}_x4.png", "tiny", backend="torch", progress=False)
        assert info["mode"] == "RGB" and info["out_size"] == (36, 28)


# ------------------------------------------------------------------------------------------- errors
def _bad_cases(tmp_path):
    good = save(np.zeros((6, 6, 3), np.uint8), tmp_path / "good.png")
    (tmp_path / "x.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    full = weights.export(tiny(), "full", {"architecture": dict(TINY)}, directory=tmp_path / "w2")
    (tmp_path / "cut.safetensors").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    torch.save(tiny().state_dict(), tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:3000])
    (tmp_path / "img.png").write_text("this is not an image\n")
    big = save(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), tmp_path / "big.png")
    (tmp_path / "trunc.png").write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    torch.save({"conv.weight": torch.rand(2, 2)}, tmp_path / "other.pth")
    return {
        "random bytes as weights": [good, "--model", tmp_path / "x.safetensors"],
        "truncated safetensors": [good, "--model", tmp_path / "cut.safetensors"],
        "truncated pth": [good, "--model", tmp_path / "cut.pth"],
        "not an SFTNet checkpoint": [good, "--model", tmp_path / "other.pth"],
        "missing weights": [good, "--model", tmp_path / "nope.safetensors"],
        "unknown model name": [good, "--model", "no-such-model"],
        "text file named .png": [tmp_path / "img.png", "--model", "tiny"],
        "truncated png": [tmp_path / "trunc.png", "--model", "tiny"],
        "missing input": [tmp_path / "missing.png", "--model", "tiny"],
        "directory as input": [tmp_path, "--model", "tiny"],
        "missing output dir": [good, "-o", tmp_path / "no" / "dir" / "o.png", "--model", "tiny"],
        "unknown output extension": [good, "-o", tmp_path / "o.xyz", "--model", "tiny"],
        "negative tile": [good, "--tile", "-3", "--model", "tiny"],
        "bad device": [good, "--device", "nonsense", "--model", "tiny"],
    }


def test_errors_are_one_clear_line(tmp_path, shipped_tiny, capsys):
    for name, argv in _bad_cases(tmp_path).items():
        rc, io = run_cli(capsys, *argv)
        lines = io.err.strip().splitlines()
        assert rc == 1, (name, io.err)
        assert len(lines) == 1 and lines[0].startswith("sft-kernels upscale: error:"), (name, io.err)
        assert "Traceback" not in io.err, name
    rc, io = run_cli(capsys, tmp_path / "img.png", "--model", "tiny")
    assert "not an image file or unsupported format" in io.err
    rc, io = run_cli(capsys, tmp_path / "good.png", "--model", tmp_path / "x.safetensors")
    assert "corrupt" in io.err


def test_corrupt_shipped_weights(tmp_path, shipped_tiny, capsys):
    _, wdir = shipped_tiny
    good = save(np.zeros((6, 6, 3), np.uint8), tmp_path / "good.png")
    f = wdir / "tiny.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    rc, io = run_cli(capsys, good, "--model", "tiny")
    assert rc == 1 and io.err.count("\n") == 1 and "sha256" in io.err
    (wdir / "tiny.json").write_text("{not json")
    rc, io = run_cli(capsys, good, "--model", "tiny")
    assert rc == 1 and io.err.count("\n") == 1 and "model card" in io.err


def test_console_error_has_no_traceback(tmp_path):
    bad = tmp_path / "img.png"
    bad.write_text("not an image")
    r = subprocess.run([sys.executable, "-m", "sft_kernels.tools.cli", "upscale", str(bad), "--model", "x.pth"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("sft-kernels upscale: error: cannot read image") and "Traceback" not in r.stderr
