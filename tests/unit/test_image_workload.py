"""Image workloads: preprocessing equals the models' own PIL-based processors on real photographs."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import shared_models
from embedperf.models.registry import get_model
from embedperf.workload import image

CLIP = get_model("openai/clip-vit-base-patch16")
SIGLIP = get_model("google/siglip-base-patch16-224")


def _processors():
    transformers = pytest.importorskip("transformers")
    # the PIL implementations (what use_fast=False gives), configured as the hub's preprocessor_config.json
    clip = transformers.CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
        crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(image.CLIP_MEAN), image_std=list(image.CLIP_STD), do_convert_rgb=True)
    siglip = transformers.SiglipImageProcessorPil(
        do_resize=True, size={"height": 224, "width": 224}, resample=3, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return {"clip": clip, "siglip": siglip}


def test_the_bundled_sample_photographs_are_real_and_several():
    pictures = image.sample_images()
    assert len(pictures) >= 4
    names = [n for n, _ in pictures]
    assert "skimage:astronaut.png" in names and "skimage:chelsea.png" in names
    assert all(img.mode == "RGB" and min(img.size) >= 224 for _, img in pictures)


@pytest.mark.parametrize("recipe", ["clip", "siglip"])
def test_preprocessing_matches_the_reference_processors_on_real_images(recipe):
    processor = _processors()[recipe]
    pictures = image.sample_images() + [("synthetic", image.synthetic_image(i, 0)) for i in range(3)]
    for name, picture in pictures:
        ours = image.preprocess(picture, recipe)
        theirs = processor(images=picture, return_tensors="np")["pixel_values"][0]
        assert ours.shape == theirs.shape == (3, 224, 224)
        assert ours.dtype == np.float32
        assert np.max(np.abs(ours - theirs)) <= 1e-5, name


def test_the_recipes_match_the_published_preprocessor_configs():
    for spec, folder in ((CLIP, "openai__clip-vit-base-patch16"), (SIGLIP, "google__siglip-base-patch16-224")):
        path = shared_models() / folder / "preprocessor_config.json"
        if not path.exists():
            pytest.skip("shared models not present")
        cfg = json.loads(path.read_text())
        recipe = image.RECIPES[spec.image_preprocess]
        assert cfg["resample"] == 3  # bicubic
        assert tuple(cfg["image_mean"]) == recipe["mean"] and tuple(cfg["image_std"]) == recipe["std"]
        assert bool(cfg.get("do_center_crop", False)) == recipe["crop"]


def test_a_clip_crop_keeps_the_centre_of_a_wide_image():
    from PIL import Image

    wide = np.zeros((224, 448, 3), dtype=np.uint8)
    wide[:, 112:336] = 255  # white centre, black sides
    x = image.preprocess(Image.fromarray(wide), "clip")
    white = (1.0 - np.array(image.CLIP_MEAN)) / np.array(image.CLIP_STD)
    assert np.allclose(x[:, :, 5:-5], white[:, None, None], atol=1e-3)
    y = image.preprocess(Image.fromarray(wide), "siglip")  # squashed, not cropped: the black sides stay
    assert y[:, 112, 0].max() < -0.9


def test_workloads_are_identical_across_calls_and_time_the_preprocessing(tmp_path):
    a = image.ensure(CLIP, 10, tmp_path)  # more than the real photographs: synthetic ones fill in
    b = image.ensure(CLIP, 10, tmp_path)
    assert a.path == b.path
    pixels = load_file(str(a.path))["pixel_values"]
    assert pixels.shape == (10, 3, 224, 224) and pixels.dtype == np.float32
    assert len(a.preprocess_ms) == 10 and all(t > 0 for t in a.preprocess_ms)
    assert a.sources[0].startswith("skimage:") and a.sources[-1].startswith("synthetic:")
    s = image.ensure(SIGLIP, 10, tmp_path)
    assert s.path != a.path  # another recipe, another file


def test_a_user_folder_is_used_and_a_bad_one_is_refused(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(2):
        image.synthetic_image(i, 7).save(folder / f"p{i}.png")
    w = image.ensure(SIGLIP, 3, tmp_path / "wl", folder)
    assert w.sources[:2] == (str(folder / "p0.png"), str(folder / "p1.png"))
    with pytest.raises(image.ImageSourceError, match="no .jpg"):
        image.ensure(SIGLIP, 1, tmp_path / "wl", tmp_path)


def test_real_captions_go_through_the_real_clip_tokenizer(tmp_path):
    from embedperf.workload import captions

    folder = shared_models() / "openai__clip-vit-base-patch16"
    if not (folder / "tokenizer.json").exists():
        pytest.skip("shared models not present")
    transformers = pytest.importorskip("transformers")
    w = captions.ensure(CLIP, folder, 3, tmp_path)
    got = load_file(str(w.path))
    expected = transformers.CLIPTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))(
        list(captions.CAPTIONS[:3]), padding="max_length", max_length=77)
    assert got["input_ids"].shape == (3, 77)
    real = got["attention_mask"].astype(bool)
    for row in range(3):
        n = int(real[row].sum())
        assert list(got["input_ids"][row, :n]) == [i for i, m in zip(expected["input_ids"][row],
                                                                     expected["attention_mask"][row]) if m]
        assert got["input_ids"][row, 0] == 49406 and got["input_ids"][row, n - 1] == 49407
        assert (got["input_ids"][row, n:] == 49407).all()  # pad = EOS
