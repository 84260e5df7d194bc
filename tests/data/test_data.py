"""Image loading and MATLAB-style bicubic downscaling."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sft_kernels.data import bicubic_downscale, cubic_kernel, imresize, list_images, load_image, mod_crop
from sft_kernels.testing import tol


# ---------------------------------------------------------------- loading
def test_list_images():
    names = list_images()
    assert {"astronaut", "chelsea", "coffee", "rocket", "camera"} <= set(names)


@pytest.mark.parametrize("name", ["astronaut", "camera", "logo"])  # RGB, greyscale, RGBA
def test_load_bundled(name):
    pytest.importorskip("skimage.data")
    img = load_image(name)
    assert img.dtype == torch.float32 and img.dim() == 3 and img.shape[0] == 3
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.max() > 0.5
    if name == "camera":  # greyscale expanded: all channels equal
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_load_path(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    img = load_image(tmp_path / "rgb.png")
    assert img.shape == (3, 7, 5)
    torch.testing.assert_close(img, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    torch.testing.assert_close(load_image(str(tmp_path / "rgba.png")),
                               torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float() / 255)
    grey = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").shape == (3, 3, 4)


def test_load_errors():
    with pytest.raises(FileNotFoundError, match="astronaut"):  # the message lists what is available
        load_image("no_such_image_name")
    with pytest.raises(TypeError):
        load_image(42)


# ---------------------------------------------------------------- resizing
def test_mod_crop():
    x = torch.rand(3, 13, 10)
    assert mod_crop(x, 4).shape == (3, 12, 8)
    assert mod_crop(x, 1).shape == x.shape
    with pytest.raises(ValueError):
        mod_crop(x, 0)


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5], dtype=torch.float64)
    # Keys, a = -0.5: k(0.5) = 0.5625, k(1.5) = -0.0625
    torch.testing.assert_close(cubic_kernel(x), torch.tensor([1, 0.5625, 0, -0.0625, 0, 0, 0.5625],
                                                             dtype=torch.float64))


@pytest.mark.parametrize("shape,scale", [((3, 17, 23), 4), ((2, 3, 16, 16), 4), ((1, 33, 13), 3), ((5, 7), 2)])
def test_shape_and_constant(shape, scale):
    x = torch.full(shape, 0.3)
    y = bicubic_downscale(x, scale)
    assert y.shape == (*shape[:-2], shape[-2] // scale, shape[-1] // scale)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, torch.full_like(y, 0.3), **tol("fp32_pointwise"))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp(scale):
    """Away from the borders a linear ramp maps to the ramp sampled at the output pixel centres
    u = (j + 0.5) * scale - 0.5 (input pixel units)."""
    w = 16 * scale
    ramp = torch.arange(w, dtype=torch.float64) * 0.01 + 0.1
    x = ramp.expand(3, 8 * scale, w)
    y = bicubic_downscale(x, scale)
    j = torch.arange(w // scale, dtype=torch.float64)
    expected = ((j + 0.5) * scale - 0.5) * 0.01 + 0.1
    inner = slice(3, -3)  # the kernel spans 2*scale input pixels each side; mirrored borders bend the ramp
    torch.testing.assert_close(y[0, 0, inner], expected[inner], **tol("fp64_pointwise"))
    # rows are constant, so every row of the output is the same
    assert torch.allclose(y[0], y[0, :1].expand_as(y[0]))


def _matlab_1d(v: np.ndarray, scale: int) -> np.ndarray:
    """Independent loop oracle: symmetric-pad, then weight input pixels by k((u - i) / scale)."""
    pad = 4 * scale
    p = np.pad(v, pad, mode="symmetric")  # MATLAB imresize's border handling
    out = []
    for j in range(len(v) // scale):
        u = (j + 0.5) * scale - 0.5
        i = np.arange(len(p)) - pad
        k = cubic_kernel(torch.from_numpy((u - i) / scale)).numpy()
        out.append((k * p).sum() / k.sum())
    return np.array(out)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_loop_oracle(scale):
    rng = np.random.default_rng(scale)
    img = rng.random((2, 9 * scale + 1, 7 * scale + 2))
    y = bicubic_downscale(torch.from_numpy(img), scale).numpy()
    rows = np.stack([np.stack([_matlab_1d(r, scale) for r in c]) for c in img])  # along W
    ref = np.stack([np.stack([_matlab_1d(col, scale) for col in c.T]).T for c in rows])  # along H
    np.testing.assert_allclose(y, ref, **tol("fp64_pointwise"))


def test_vs_torch_antialias():
    """Same kernel and sample positions as F.interpolate(bicubic, antialias=True): the interior
    matches to rounding; the outer 2 pixels differ because PyTorch renormalises truncated taps at
    the border while MATLAB mirrors the image."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 48, dtype=torch.float64)
    ours = bicubic_downscale(x, 4)
    theirs = F.interpolate(x, size=(16, 12), mode="bicubic", antialias=True, align_corners=False)
    diff = (ours - theirs).abs()
    assert diff[..., 2:-2, 2:-2].max() < 1e-12
    assert diff.max() < 0.1 and diff.mean() < 0.01


def test_imresize_upscale_and_errors():
    x = torch.rand(1, 5, 6)
    up = imresize(x, 2)
    assert up.shape == (1, 10, 12)
    torch.testing.assert_close(imresize(torch.full((4, 4), 0.7), 3.0), torch.full((12, 12), 0.7))
    assert bicubic_downscale(torch.randint(0, 255, (8, 8), dtype=torch.uint8), 2).dtype == torch.float32
    with pytest.raises(ValueError):
        bicubic_downscale(x, 0)
    with pytest.raises(ValueError):
        bicubic_downscale(torch.rand(3, 3), 4)
    with pytest.raises(ValueError):
        imresize(x, -1.0)


def test_patch_sampler_detail_prefers_what_bicubic_misses():
    """detail=1 draws patch positions in proportion to |HR - bicubic(LR)|: its patches hold more of what SR must
    restore than uniformly drawn ones (fixed seeds: deterministic)."""
    from sft_kernels.data.datasets import PatchSampler
    from sft_kernels.data.images import imresize

    def mean_miss(detail):
        lr, hr = PatchSampler(("astronaut", "retina"), patch=12, seed=3, detail=detail).batch(48)
        return (hr - imresize(lr, 4).clamp(0, 1)).abs().mean().item()

    assert mean_miss(1.0) > 1.3 * mean_miss(0.0)  # measured 0.027 vs 0.018
    with pytest.raises(ValueError, match="detail"):
        PatchSampler(("astronaut",), patch=12, detail=1.5)


def test_patch_sampler_zooms_add_shrunk_photos():
    """zooms=(0.5,) adds each photo shrunk by half (HR = antialiased bicubic ×0.5, mod-cropped; LR its ×1/4) as
    one more photo; a shrunk photo smaller than a patch is left out; zooms outside (0, 1) are refused."""
    from sft_kernels.data.datasets import PatchSampler, sr_pair
    from sft_kernels.data.images import bicubic_downscale, imresize, mod_crop

    s = PatchSampler(("astronaut", "text"), patch=24, zooms=(0.5,))
    assert len(s.pairs) == 3  # text (172×448) shrunk by half leaves a 21-pixel-high LR: too small for 24
    lr, hr = s.pairs[2]
    _, hr_full = sr_pair("astronaut")
    want = mod_crop(imresize(hr_full, 0.5).clamp(0, 1), 4)
    torch.testing.assert_close(hr, want)
    torch.testing.assert_close(lr, bicubic_downscale(want, 4).clamp(0, 1))
    assert hr.shape[1:] == (256, 256)
    for bad in ((1.0,), (0.0,), (-0.5,)):
        with pytest.raises(ValueError, match="zooms"):
            PatchSampler(("astronaut",), patch=12, zooms=bad)
    # a zoom that shrinks a photo below the scale factor is skipped too (it had failed to downscale)
    assert len(PatchSampler(("astronaut",), patch=8, zooms=(0.01,)).pairs) == 1
    for kw, match in ((dict(names=()), "at least one photo"), (dict(patch=0), "patch must be a positive int")):
        with pytest.raises(ValueError, match=match):
            PatchSampler(**kw)


def test_photo_labels_are_unique(tmp_path):
    """Photos sharing a stem (two folders, or a file named like a bundled eval photo) get labels told apart by
    their folder, so a report or an eval keeps both scores (one had overwritten the other)."""
    from sft_kernels.data.datasets import photo_labels

    for sub in ("s1", "s2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes(b"")
    (tmp_path / "s1" / "china.png").write_bytes(b"")
    names = ["china", "flower", str(tmp_path / "s1" / "x.png"), str(tmp_path / "s2" / "x.png"),
             str(tmp_path / "s1" / "china.png")]
    assert photo_labels(names) == ["china", "flower", "s1/x", "s2/x", "s1/china"]
    assert photo_labels(["flower", "flower"]) == ["flower#1", "flower#2"]


def test_float_and_32_bit_images_keep_their_levels(tmp_path):
    """Float ("F") TIFFs in [0, 1] and 32-bit ("I") ones with 16-bit levels load with their values (Pillow's
    convert("RGB") had clipped them to black or white)."""
    from PIL import Image

    f = np.linspace(0.015, 0.995, 20 * 30, dtype=np.float32).reshape(20, 30)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    Image.fromarray((f * 65535).astype(np.int32), mode="I").save(tmp_path / "i.tif")
    for name in ("f.tif", "i.tif"):
        x = load_image(tmp_path / name)
        assert x.shape == (3, 20, 30)
        torch.testing.assert_close(x[0], torch.from_numpy(f), atol=1e-4, rtol=0)


def test_load_image_follows_the_exif_orientation(tmp_path):
    """A photo whose EXIF says 'rotate 90°' loads upright, as upscale reads it."""
    from PIL import Image

    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :5] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    x = load_image(tmp_path / "r.jpg")
    assert x.shape == (3, 20, 10) and x[:, :5].mean() > 0.9 and x[:, -5:].mean() < 0.1
