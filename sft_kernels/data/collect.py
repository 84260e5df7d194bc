"""More training photographs that can be had offline: desktop wallpaper packages of the operating system's archive.

`collect(out)` copies the photographs below (each checked by eye to be a photograph, not a rendering, drawing or
painting) from their installed packages into `out`, and writes `out/SOURCES.json`: every file's package, original
path, author and licence. With `install=True` it first installs the packages (Debian / Ubuntu: `apt-get install`,
needs root). The photos are not committed to this repository; `make data` rebuilds the folder.

Wallpaper sets were surveyed on Debian 12 (bookworm). Left out as renderings or artwork: ukui-wallpapers (all),
gnome-backgrounds (all), sway-backgrounds, mate's abstract and desktop sets, most of plasma-workspace-wallpapers
(Altai, Autumn, Canopee, Cascade, Cluster, Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay, Kite, Kokkini,
MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna), lomiri's Fossa, Infinite-Sea and Painting-Colors,
and from lomiri-wallpapers-16.04 (Ubuntu's 2018 photo contest) umang (a rendering) and analogpattern (a colour
wash over a texture, not clearly a photograph). scikit-learn's china and flower (the evaluation photos) are in none
of them.

Photos marked `held_out` never go into the training folder: they are copied into a separate folder
(`<out>-heldout`) so that a model's gain over bicubic can be measured on photographs it never saw besides china and
flower (`sft-kernels report --photos data/photos-heldout`). They were chosen before any training on the set: a
foliage-against-sky photo like china (Dragonfly) and a mountain landscape (picosdeeuropa).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Photo:
    package: str
    path: str  # a file, or for KDE wallpapers the folder whose largest "WxH" image is taken
    author: str
    licence: str
    held_out: bool = False  # evaluation only: copied to the held-out folder, never trained on


_MATE = "/usr/share/backgrounds/mate/nature/"
_HELD_OUT = ("Dragonfly_by_Bolly.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg")
_KDE = "/usr/share/wallpapers/"
PHOTOS = (
    Photo("mate-backgrounds", _MATE + "Aqua.jpg", "Charles Barbin", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "Blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "Dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "FreshFlower.jpg", "Jens Ansorg", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "Garden.jpg", "Charles Barbin", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "LadyBird.jpg", "Charles Barbin", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "RainDrops.jpg", "blackcombwhistler07", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "Storm.jpg", "Sergey Nazarov", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "TwoWings.jpg", "Charles Barbin, Hylke Bons", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "Wood.jpg", "Jean-François Fortin Tam", "GPL-2+"),
    Photo("mate-backgrounds", _MATE + "YellowFlower.jpg", "Charles Barbin", "GPL-2+"),
    Photo("plasma-workspace-wallpapers", _KDE + "BytheWater", "Maciej Wiklo", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "ColdRipple", "Risto Saukonpää", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "ColorfulCups", "Dmitri Popov", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "DarkestHour", "Risto Saukonpää", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "EveningGlow", "Ian Hex", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "FallenLeaf", "Martin Klapetek", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "Grey", "Sigi Sagi", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "OneStandsOut", "Risto Saukonpää", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "Path", "Risto Saukonpää", "LGPL-3"),
    Photo("plasma-workspace-wallpapers", _KDE + "summer_1am", "Risto Saukonpää", "LGPL-3"),
    Photo("lomiri-wallpapers-20.04", "/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus",
          "CC-BY-SA-3.0"),
    *(Photo("lomiri-wallpapers-16.04", "/usr/share/backgrounds/" + f, author, lic, held_out=f in _HELD_OUT)
      for f, author, lic in (
          ("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
          ("Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
          ("Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
          ("Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
          ("Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
          ("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
          ("free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
          ("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
          ("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
          ("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
          ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
          ("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
          ("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"))),
)
PACKAGES = tuple(sorted({p.package for p in PHOTOS}))


def _source_file(photo: Photo) -> Optional[Path]:
    """The file to copy: the path itself, or a KDE wallpaper's largest WxH image; None if not installed."""
    p = Path(photo.path)
    if p.is_file():
        return p
    if not p.is_dir():
        return None
    best, best_area = None, 0
    for f in p.glob("contents/images*/*"):
        m = re.match(r"(\d+)x(\d+)\.", f.name)
        if m and int(m.group(1)) * int(m.group(2)) > best_area:
            best, best_area = f, int(m.group(1)) * int(m.group(2))
    return best


def install_packages(packages=PACKAGES, log=print) -> None:
    """apt-get install the wallpaper packages (Debian / Ubuntu; needs root)."""
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get not found: install the packages " + " ".join(packages) + " with this system's "
                           "package manager, then run without --install")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    log("running: " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"DEBIAN_FRONTEND": "noninteractive",
                                                                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if proc.returncode != 0:
        raise RuntimeError(f"apt-get failed ({proc.returncode}): {proc.stderr.strip()[-400:]} "
                           "(it needs root and the package archive; or install the packages yourself)")


def export_bundled(out) -> list:
    """The bundled training photos (scikit-image's, see datasets.TRAIN_IMAGES) as PNG files in `out/scikit-image`,
    so one folder holds every training photo; manifest rows for them."""
    import numpy as np
    from PIL import Image

    from .datasets import TRAIN_IMAGES, _load_named

    rows = []
    for name in TRAIN_IMAGES:
        dest = Path(out) / "scikit-image" / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            arr = (_load_named(name).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(np.ascontiguousarray(arr)).save(dest)
        rows.append(dict(file=str(dest.relative_to(out)), package="scikit-image (pip)", source=f"skimage.data.{name}",
                         author="see skimage/data/README.txt", licence="see skimage/data/README.txt (public domain "
                         "or CC0 for these photos)"))
    return rows


def heldout_dir(out) -> Path:
    """Where `collect(out)` puts the held-out photos: a sibling of the training folder, never inside it."""
    out = Path(out)
    return out.with_name(out.name + "-heldout")


def _copy(photo: Photo, src: Path, root: Path) -> dict:
    name = Path(photo.path).name if src == Path(photo.path) else f"{Path(photo.path).name}{src.suffix}"
    dest = root / photo.package / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    return dict(file=str(dest.relative_to(root)), package=photo.package, source=str(src), author=photo.author,
                licence=photo.licence)


def _write_manifest(root: Path, files: list, missing: list, note: str) -> dict:
    manifest = dict(files=files, missing=missing, note=note)
    root.mkdir(parents=True, exist_ok=True)
    (root / "SOURCES.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def collect(out, install: bool = False, bundled: bool = True, log=print) -> dict:
    """Copy the catalogued photographs into `out` (one subfolder per package; with `bundled`, scikit-image's
    training photos too) and write `out/SOURCES.json`; the held-out photos go to `heldout_dir(out)` with their own
    SOURCES.json.

    Returns the training manifest: {"files": [{file, package, source, author, licence}], "missing": [...],
    "heldout": [...]}. Raises RuntimeError when none of the packages is installed."""
    if install:
        install_packages(log=log)
    out, held_root = Path(out), heldout_dir(out)
    files, held, missing = [], [], []
    for photo in PHOTOS:
        src = _source_file(photo)
        if src is None:
            missing.append(dict(asdict(photo), reason="not installed"))
        elif photo.held_out:
            held.append(_copy(photo, src, held_root))
        else:
            files.append(_copy(photo, src, out))
    if not files:
        raise RuntimeError("none of the wallpaper packages is installed (" + " ".join(PACKAGES) + "); run "
                           "`sft-kernels data --install` as root, or install them with the system's package manager")
    if bundled:
        files += export_bundled(out)
    if held:
        _write_manifest(held_root, held, [], "held-out photographs: evaluation only, never trained on (see "
                        "sft_kernels/data/collect.py)")
    manifest = _write_manifest(out, files, missing, "photographs from operating-system wallpaper packages; see "
                               "sft_kernels/data/collect.py for what was left out and why")
    manifest["heldout"] = held
    log(f"collected {len(files)} photos into {out}" + (f" ({len(missing)} not installed)" if missing else "")
        + (f"; {len(held)} held out for evaluation in {held_root}" if held else ""))
    return manifest


def manifests(dirs) -> list:
    """The SOURCES.json manifests found at the top of training folders (for model cards)."""
    out = []
    for d in dirs:
        path = Path(d).expanduser() / "SOURCES.json"
        if path.is_file():
            out.append(dict(folder=str(d), **json.loads(path.read_text())))
    return out
