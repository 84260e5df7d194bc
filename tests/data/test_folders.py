"""Training from folders of photos: indexing (formats, sizes, unreadable files, DIV2K's LR folders), patches
degraded like the whole photo would be, reproducible and resumable streams, and the errors users see."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sft_kernels.data.folders import MARGIN, DataError, FolderPatchSampler, index_folders, load_rgb_uint8
from sft_kernels.data.images import bicubic_downscale
from sft_kernels.testing import tol


def _photo(h, w, seed):
    """A smooth random image with some texture (uint8 H×W×3)."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / (7 + c) + y / (11 + c)) for c in range(3)], -1)
    return ((base * 0.4 + 0.5 + g.normal(0, 0.05, (h, w, 3))).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_photo(200, 260, 0)).save(root / "a.png")
    Image.fromarray(_photo(230, 210, 1)).save(root / "sub" / "b.jpg", quality=95)
    Image.fromarray(_photo(180, 190, 2)).save(root / "c.webp", quality=95)
    Image.fromarray(_photo(60, 60, 3)).save(root / "tiny.png")  # too small
    (root / "broken.jpg").write_bytes(b"not a jpeg")  # unreadable
    (root / "notes.txt").write_text("ignored")
    lr_dir = root / "DIV2K_train_LR_bicubic" / "X4"
    lr_dir.mkdir(parents=True)
    Image.fromarray(_photo(150, 150, 4)).save(lr_dir / "0001x4.png")  # an LR input, never an HR target
    return root


def test_index_reads_formats_and_says_what_it_skipped(folder):
    index = index_folders([folder], min_side=128)
    assert sorted(e.path.rsplit("/", 1)[1] for e in index.entries) == ["a.png", "b.jpg", "c.webp"]
    reasons = {p.rsplit("/", 1)[1]: why for p, why in index.skipped}
    assert reasons["tiny.png"].startswith("too small") and reasons["broken.jpg"].startswith("unreadable")
    assert reasons["0001x4.png"] == "low-resolution folder"
    assert "3 photos" in index.summary() and "1 unreadable" in index.summary()


def test_empty_missing_and_unusable_folders_raise_clear_errors(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        index_folders([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable photos"):
        index_folders([tmp_path / "empty"])
    with pytest.raises(DataError, match="skipped"):
        index_folders([folder], min_side=1000)
    with pytest.raises(DataError, match="HR patch"):
        FolderPatchSampler(index_folders([folder]), patch=64)  # 256 px + margins: no photo is that big


def test_patches_are_aligned_and_degraded_like_the_whole_photo(folder):
    index = index_folders([folder])
    sampler = FolderPatchSampler(index, patch=12, seed=3, detail=0.0, cache=3)
    lr, hr = sampler.batch(6)
    assert lr.shape == (6, 3, 12, 12) and hr.shape == (6, 3, 48, 48)
    assert lr.dtype == hr.dtype == torch.float32 and 0 <= float(lr.min()) and float(hr.max()) <= 1
    # Each HR patch is an exact crop of one of the cached photos (up to the dihedral augmentation), and its LR is
    # what shrinking the whole photo gives at that place: check one patch by redoing its crop without augmentation.
    photo = sampler.cached[0][1].float() / 255
    s, p, m = 4, 12, MARGIN
    crop = photo[:, 40:40 + s * p + 2 * m, 52:52 + s * p + 2 * m]
    lr_crop = bicubic_downscale(crop, s).clamp(0, 1)[:, m // s:m // s + p, m // s:m // s + p]
    whole = bicubic_downscale(photo[:, :photo.shape[1] // 4 * 4, :photo.shape[2] // 4 * 4], s).clamp(0, 1)
    torch.testing.assert_close(lr_crop, whole[:, 10 + m // s:10 + m // s + p, 13 + m // s:13 + m // s + p],
                               **tol("fp32_pointwise"))


def test_stream_is_reproducible_and_resumes(folder):
    index = index_folders([folder])
    a = FolderPatchSampler(index, patch=12, seed=5, cache=2, refresh=1)
    first = [a.batch(4) for _ in range(3)]
    state = a.state_dict()
    rest = [a.batch(4) for _ in range(3)]
    b = FolderPatchSampler(index, patch=12, seed=5, cache=2, refresh=1)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(first, [b.batch(4) for _ in range(3)]))
    c = FolderPatchSampler(index, patch=12, seed=99, cache=2, refresh=1)
    c.load_state_dict(state)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(rest, [c.batch(4) for _ in range(3)]))


def test_every_photo_gets_used_as_the_cache_refreshes(folder):
    sampler = FolderPatchSampler(index_folders([folder]), patch=12, seed=0, cache=1, refresh=1)
    seen = set()
    for _ in range(40):
        sampler.batch(1)
        seen.add(sampler.cached[0][0])
    assert seen == {0, 1, 2}


def test_load_rgb_expands_grey_and_drops_alpha(tmp_path):
    Image.fromarray(np.full((8, 9), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((8, 9, 4), 100, np.uint8), "RGBA").save(tmp_path / "a.png")
    for name, value in (("g.png", 200), ("a.png", 100)):
        img = load_rgb_uint8(str(tmp_path / name))
        assert img.shape == (3, 8, 9) and img.dtype == torch.uint8 and int(img[1, 3, 4]) == value


def test_load_rgb_scales_16_bit_photos(tmp_path):
    """A 16-bit greyscale PNG is scaled to 8 bits (Pillow's convert("RGB") had clamped it to a white photo)."""
    Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(tmp_path / "g16.png")
    img = load_rgb_uint8(str(tmp_path / "g16.png"))
    assert img.shape == (3, 1, 3) and img[0, 0].tolist() == [0, 128, 255]


def test_a_photo_that_cannot_be_decoded_is_skipped_with_a_warning(tmp_path):
    """A truncated JPEG passes the index's verify() (which does not decode JPEG pixels) but not decoding: the sampler
    warns, stops drawing it and goes on with the others; with none left it says so."""
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(_photo(200, 220, 0)).save(root / "good.png")
    Image.fromarray(_photo(400, 400, 1)).save(root / "cut.jpg", quality=95)
    data = (root / "cut.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) * 6 // 10])
    index = index_folders([root])
    assert len(index.entries) == 2
    with pytest.warns(UserWarning, match="cut.jpg: it cannot be decoded"):
        sampler = FolderPatchSampler(index, patch=8, cache=2, refresh=1, seed=3)
        for _ in range(6):
            lr, hr = sampler.batch(2)
    assert lr.shape == (2, 3, 8, 8) and all(sampler.entries[i].path.endswith("good.png") for i, _ in sampler.cached)
    (root / "good.png").unlink()
    (root / "cut2.jpg").write_bytes(data[: len(data) * 6 // 10])
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the training photos can be decoded"):
        FolderPatchSampler(index_folders([root]), patch=8, cache=2)


def test_train_cli_on_a_folder(folder, tmp_path, capsys):
    from sft_kernels.tools import cli

    out = tmp_path / "run"
    argv = ["train", "--data", str(folder), "--out", str(out), "--steps", "2", "--batch", "2", "--patch", "12",
            "--num-blocks", "1", "--channels", "8", "--eval-every", "0", "--ema", "0"]
    assert cli.main(argv) == 0
    assert (out / "last.pt").is_file()
    assert "training data: 3 photos" in capsys.readouterr().out
    assert cli.main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err

    # exporting it scores the held-out sibling folder `sft-kernels data` makes, and names its photos
    from sft_kernels.train.export import export_run

    held = folder.with_name(folder.name + "-heldout")
    held.mkdir()
    Image.fromarray(_photo(160, 176, 9)).save(held / "lake.png")
    card = json.loads(export_run(out, "tiny", directory=tmp_path / "w").with_suffix(".json").read_text())
    (entry,) = card["data"]["heldout"]
    assert entry["folder"] == str(held) and set(entry["eval"]["lake"]) >= {"psnr", "bicubic_psnr"}


def test_collect_copies_the_catalogued_photos_with_their_sources(tmp_path, monkeypatch):
    import json

    from sft_kernels.data import collect

    src = tmp_path / "usr"
    (src / "kde" / "Lake" / "contents" / "images").mkdir(parents=True)
    for size in ("640x480", "2560x1600"):
        Image.fromarray(_photo(20, 30, 0)).save(src / "kde" / "Lake" / "contents" / "images" / f"{size}.jpg")
    Image.fromarray(_photo(30, 20, 1)).save(src / "flower.jpg")
    Image.fromarray(_photo(24, 24, 2)).save(src / "kept.jpg")
    monkeypatch.setattr(collect, "PHOTOS", (
        collect.Photo("pkg-a", str(src / "flower.jpg"), "A. Author", "GPL-2+"),
        collect.Photo("pkg-a", str(src / "kept.jpg"), "D. Author", "CC0-1.0", held_out=True),
        collect.Photo("pkg-b", str(src / "kde" / "Lake"), "B. Author", "LGPL-3"),
        collect.Photo("pkg-c", str(src / "absent.jpg"), "C. Author", "CC-BY-SA-3.0"),
    ))
    out = tmp_path / "photos"
    manifest = collect.collect(out, bundled=False, log=lambda *_: None)
    assert sorted(f["file"] for f in manifest["files"]) == ["pkg-a/flower.jpg", "pkg-b/Lake.jpg"]
    assert manifest["files"][1]["source"].endswith("2560x1600.jpg")  # the largest size of a KDE wallpaper
    assert [m["package"] for m in manifest["missing"]] == ["pkg-c"]
    assert json.loads((out / "SOURCES.json").read_text())["files"][0]["licence"] == "GPL-2+"
    assert collect.manifests([out])[0]["folder"] == str(out)
    # a held-out photo lands beside the training folder, never inside it
    held = tmp_path / "photos-heldout"
    assert [f["file"] for f in manifest["heldout"]] == ["pkg-a/kept.jpg"] and (held / "pkg-a" / "kept.jpg").is_file()
    assert not (out / "pkg-a" / "kept.jpg").exists()
    assert json.loads((held / "SOURCES.json").read_text())["files"][0]["author"] == "D. Author"
    monkeypatch.setattr(collect, "PHOTOS", (collect.Photo("pkg-c", str(src / "absent.jpg"), "C", "x"),))
    with pytest.raises(RuntimeError, match="none of the wallpaper packages"):
        collect.collect(tmp_path / "empty", bundled=False, log=lambda *_: None)
