"""Image workloads: real pictures preprocessed once, exactly as each model defines it, for every runtime.

Every runtime receives the same float32 pixel tensor [B, 3, H, W]; preprocessing is Python's job and
is timed apart from the model (its own figure in the cell). Sources, in order:

- a folder the user names (`--images DIR`: *.jpg, *.jpeg, *.png, *.webp, sorted by name);
- offline, the real sample photographs inside the scikit-image wheel (its other images are
  downloaded at run time, so they are not used);
- for batches larger than the real images available, seeded synthetic images (smooth colour
  gradients plus noise, in varied sizes and aspect ratios so resizing and cropping do real work).

The two recipes (checked against transformers' PIL-based processors in tests):
- clip: resize the shortest side to 224 (bicubic), centre-crop 224×224, rescale 1/255, CLIP mean/std;
- siglip: resize to 224×224 (bicubic, no crop), rescale 1/255, mean = std = 0.5.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from embedperf.models.registry import ModelSpec

IMAGE_WORKLOAD_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# the colour photographs shipped inside the scikit-image wheel (no download needed)
SKIMAGE_SAMPLES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                   "hubble_deep_field.jpg", "ihc.png", "retina.jpg")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RECIPES = {
    "clip": {"resize": "shortest_edge", "crop": True, "mean": CLIP_MEAN, "std": CLIP_STD},
    "siglip": {"resize": "square", "crop": False, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}


class ImageSourceError(ValueError):
    """The image folder is missing, empty or unreadable."""


@dataclass(frozen=True)
class ImageWorkload:
    batch: int
    seq: int  # the image side in pixels, as the protocol says
    path: Path
    preprocess_ms: tuple[float, ...]  # per image, decode excluded
    sources: tuple[str, ...]


def sample_images() -> list[tuple[str, Image.Image]]:
    """The real photographs bundled in scikit-image, decoded to RGB."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    out = []
    for name in SKIMAGE_SAMPLES:
        path = root / name
        if path.exists():
            out.append((f"skimage:{name}", Image.open(path).convert("RGB")))
    return out


def folder_images(folder: Path) -> list[tuple[str, Image.Image]]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ImageSourceError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageSourceError(f"--images {folder}: no {', '.join(IMAGE_SUFFIXES)} files")
    out = []
    for path in files:
        try:
            out.append((str(path), Image.open(path).convert("RGB")))
        except OSError as e:
            raise ImageSourceError(f"--images: cannot read {path}: {e}") from e
    return out


def synthetic_image(index: int, seed: int) -> Image.Image:
    """A seeded picture: smooth gradients and noise at a varied size and aspect ratio."""
    rng = np.random.default_rng([seed, index])
    h, w = int(rng.integers(160, 480)), int(rng.integers(160, 480))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    slope = rng.uniform(-0.6, 0.6, size=(3, 2)).astype(np.float32)
    img = base[:, None, None] + slope[:, 0, None, None] * y + slope[:, 1, None, None] * x
    img += rng.normal(0, 20, size=(3, h, w)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0), "RGB")


def preprocess(image: Image.Image, recipe: str, size: int = 224) -> np.ndarray:
    """One RGB image → float32 [3, size, size], as the model's own (PIL-based) processor does it."""
    r = RECIPES[recipe]
    if r["resize"] == "shortest_edge":
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        image = image.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    else:
        image = image.resize((size, size), resample=Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.uint8)
    if r["crop"]:
        h, w = pixels.shape[:2]
        top, left = int((h - size) / 2.0), int((w - size) / 2.0)
        pixels = pixels[top:top + size, left:left + size]
    x = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(r["mean"], dtype=np.float32)) / np.asarray(r["std"], dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def pictures(count: int, folder: Path | None = None, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """`count` pictures: the folder's (or scikit-image's) real ones first, then seeded synthetic ones."""
    real = folder_images(folder) if folder else sample_images()
    out = real[:count]
    for i in range(count - len(out)):
        out.append((f"synthetic:{seed}:{i}", synthetic_image(i, seed)))
    return out


def make_pixels(spec: ModelSpec, batch: int, folder: Path | None = None, seed: int = 0):
    """(pixel_values [B,3,S,S], per-image preprocessing ms, source names)."""
    images = pictures(batch, folder, seed)
    rows, times = [], []
    for _, image in images:
        t0 = time.perf_counter_ns()
        rows.append(preprocess(image, spec.image_preprocess, spec.image_size))
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return np.stack(rows), times, [name for name, _ in images]


def _key(spec: ModelSpec, folder: Path | None, seed: int) -> str:
    ident = {"v": IMAGE_WORKLOAD_VERSION, "recipe": spec.image_preprocess, "size": spec.image_size, "seed": seed,
             "folder": str(Path(folder).expanduser().resolve()) if folder else "skimage"}
    if folder:  # a changed folder is a new workload
        ident["files"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(folder).iterdir())
                          if p.suffix.lower() in IMAGE_SUFFIXES]
    return "img-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def ensure(spec: ModelSpec, batch: int, root: Path, folder: Path | None = None, seed: int = 0) -> ImageWorkload:
    """The pixel workload for one batch size. Preprocessing runs (and is timed) on every call, in this
    process; the file is written once and kept, so every runtime of every run reads the same pixels."""
    where = root / _key(spec, folder, seed)
    path = where / f"b{batch}_px{spec.image_size}.safetensors"
    pixels, times, names = make_pixels(spec, batch, folder, seed)
    if not path.exists():
        where.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"pixel_values": pixels}, str(tmp), metadata={"recipe": spec.image_preprocess, "seed": str(seed)})
        tmp.replace(path)
    return ImageWorkload(batch, spec.image_size, path, tuple(times), tuple(names))
