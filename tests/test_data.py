"""Tests for minimagen.data: shapes, scorer, emoji, image folder, HF wrappers, text cache."""
import hashlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import minimagen.data.emoji as emoji_module

from minimagen.data import (
    COLOURS,
    HELD_OUT,
    SHAPES,
    EmojiDataset,
    HFImageTextDataset,
    HFIterableImageTextDataset,
    ImageFolderDataset,
    ShapesDataset,
    TextEmbeddingCache,
    TextImageCollator,
    all_combinations,
    find_emoji_font,
    held_out_dataset,
    parse_caption,
    render_shape,
    score_image,
    to_square_tensor,
)

_C = "red|green|blue|yellow|purple|orange|white|black"
CAPTION_RE = re.compile(
    rf"^a (?:(?:small|large) )?({_C}) (circle|square|triangle) on a ({_C}) background$"
)


# --------------------------------------------------------------------------------------------
# Shapes


def test_shapes_same_seed_and_index_give_same_item():
    a, b = ShapesDataset(size=32, seed=3), ShapesDataset(size=32, seed=3)
    for i in (0, 7, 9_999):
        assert torch.equal(a[i][0], a[i][0]) and a[i][1] == a[i][1]
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]


def test_shapes_different_seed_gives_different_items():
    a, b = ShapesDataset(size=32, seed=0), ShapesDataset(size=32, seed=1)
    assert any(not torch.equal(a[i][0], b[i][0]) for i in range(5))
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(5))


def test_shapes_do_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ShapesDataset(size=16)[0]
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("size_words", [False, True])
def test_shapes_captions_match_exact_form(size_words):
    ds = ShapesDataset(size=16, length=300, size_words=size_words)
    for caption in ds.captions():
        assert CAPTION_RE.match(caption), caption
        assert caption.startswith(("a small ", "a large ")) == size_words


def test_shapes_caption_method_matches_getitem():
    ds = ShapesDataset(size=16, length=20, size_words=True)
    assert [ds[i][1] for i in range(20)] == ds.captions()


def test_shapes_foreground_differs_from_background():
    for caption in ShapesDataset(size=16, length=2_000).captions():
        fg, _, bg = parse_caption(caption)
        assert fg != bg


def test_held_out_combinations_cover_every_colour_as_fg_and_bg():
    assert len(HELD_OUT) == len(set(HELD_OUT)) == 16
    assert set(HELD_OUT) <= set(all_combinations())
    assert {fg for fg, _, _ in HELD_OUT} == set(COLOURS)
    assert {bg for _, _, bg in HELD_OUT} == set(COLOURS)


def test_all_combinations_has_168_distinct_triples():
    combos = all_combinations()
    assert len(combos) == len(set(combos)) == 8 * 3 * 7


def test_training_shapes_never_show_held_out_combinations():
    seen = {parse_caption(c) for c in ShapesDataset(size=16, length=2_000).captions()}
    assert not seen & set(HELD_OUT)
    assert len(seen) > 100  # and it does show the rest


def test_held_out_dataset_yields_only_held_out_combinations():
    seen = {parse_caption(c) for c in held_out_dataset(size=16, length=500).captions()}
    assert seen == set(HELD_OUT)


def test_shapes_include_rejects_invalid_triples():
    with pytest.raises(ValueError, match="include"):
        ShapesDataset(include=[("red", "circle", "red")])


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_images_are_float_3_by_size_in_range(size):
    image, _ = ShapesDataset(size=size)[0]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert image.min() < 0.25 and image.max() > 0.75  # uses the range, not a grey blur


def test_shapes_size_word_matches_drawn_size():
    ds = ShapesDataset(size=64, length=300, size_words=True)
    areas = {}  # (shape, size word) -> foreground pixel counts
    for i in range(len(ds)):
        image, caption = ds[i]
        _, shape, bg = parse_caption(caption)
        bg_value = torch.tensor(COLOURS[bg]).view(3, 1, 1) / 255
        area = ((image - bg_value).abs().amax(0) > 0.3).sum().item()
        areas.setdefault((shape, caption.split()[1]), []).append(area)
    for shape in SHAPES:
        assert min(areas[(shape, "large")]) > max(areas[(shape, "small")])


def test_render_shape_returns_rgb_image_of_size():
    image = render_shape("red", "triangle", "blue", 40, 0.5, 0.5, 0.3)
    assert image.size == (40, 40) and image.mode == "RGB"
    assert image.getpixel((0, 0)) == COLOURS["blue"] and image.getpixel((20, 24)) == COLOURS["red"]


def test_parse_caption_rejects_other_text():
    assert parse_caption("a large red circle on a blue background") == ("red", "circle", "blue")
    bad_captions = ["a red circle", "a pink circle on a blue background",
                    "A red circle on a blue background"]
    for bad in bad_captions:
        with pytest.raises(ValueError, match="caption"):
            parse_caption(bad)


# --------------------------------------------------------------------------------------------
# score_image


def test_image_colours_are_the_captions():
    ds = ShapesDataset(size=32, length=100, seed=5)
    for i in range(len(ds)):
        image, caption = ds[i]
        assert score_image(image, caption)["joint_colour_ok"], caption


@pytest.mark.parametrize("size", [32, 64])
def test_scorer_accuracy_on_ground_truth(size):
    ds = ShapesDataset(size=size, length=300, seed=11, size_words=True)
    scores = [score_image(ds[i][0], ds[i][1]) for i in range(len(ds))]
    colour_acc = np.mean([s["joint_colour_ok"] for s in scores])
    shape_acc = np.mean([s["shape_ok"] for s in scores])
    assert colour_acc >= 0.98 and shape_acc >= 0.9, (colour_acc, shape_acc)


def test_scorer_flags_wrong_foreground_colour():
    ds = ShapesDataset(size=32, length=50, seed=2)
    for i in range(len(ds)):
        image, caption = ds[i]
        fg, shape, bg = parse_caption(caption)
        wrong = next(c for c in COLOURS if c not in (fg, bg))
        result = score_image(image, f"a {wrong} {shape} on a {bg} background")
        assert not result["fg_ok"] and not result["joint_colour_ok"] and result["bg_ok"]


def test_scorer_accepts_pil_images():
    image = render_shape("green", "square", "white", 32, 0.5, 0.5, 0.25)
    result = score_image(image, "a green square on a white background")
    assert result["fg"] == "green" and result["bg"] == "white" and result["shape"] == "square"


def test_scorer_rejects_the_models_minus_one_to_one_range():
    image, caption = ShapesDataset(size=32)[0]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_image(image * 2 - 1, caption)


def test_scorer_finds_no_foreground_in_flat_image():
    result = score_image(torch.full((3, 32, 32), 0.5), "a red circle on a blue background")
    assert result["fg"] is None and not result["fg_ok"] and not result["shape_ok"]


# --------------------------------------------------------------------------------------------
# Emoji


@pytest.fixture(scope="module")
def emoji():
    return EmojiDataset(size=32)


@pytest.fixture
def no_font(monkeypatch):
    """A machine without the Noto Color Emoji font."""
    def missing():
        raise FileNotFoundError("Noto Color Emoji font not found. Install it with `sudo apt-get install "
                                "fonts-noto-color-emoji`")
    monkeypatch.setattr(emoji_module, "find_emoji_font", missing)


def test_emoji_captions_are_lowercased_unicode_names(emoji):
    assert len(emoji) > 500
    if 0x1F34E in emoji.codepoints:
        assert "red apple" in emoji.names
    assert all(name == name.lower() and name.strip() == name for name in emoji.names)
    assert 0x1F3FB not in emoji.codepoints  # skin-tone modifiers are not pictures


def test_emoji_images_are_not_blank(emoji):
    for i in (0, len(emoji) // 2, len(emoji) - 1):
        image, caption = emoji[i]
        assert image.shape == (3, 32, 32) and image.min() >= 0 and image.max() <= 1
        assert image.std() > 0.1, caption
        assert (image < 0.9).float().mean() > 0.05, caption  # not all white


def test_emoji_include_names_selects_those(emoji):
    ds = EmojiDataset(size=16, include_names=emoji.names[:3])
    assert ds.captions() == emoji.names[:3] and ds[2][1] == emoji.names[2]
    with pytest.raises(ValueError, match="include_names"):
        EmojiDataset(size=16, include_names=["no such emoji"])


def test_emoji_up_to_64_px_need_no_font(no_font):
    ds = EmojiDataset(size=64)
    assert ds.font_path is None and len(ds) > 1000
    image, caption = ds[ds.names.index("red apple")]
    red, green = image[0].mean(), image[1].mean()
    assert image.shape == (3, 64, 64) and red > green, caption  # an apple, and a red one


def test_emoji_above_64_px_without_the_font_say_how_to_install(no_font):
    with pytest.raises(FileNotFoundError, match="shipped emoji are 64 px.*apt-get install fonts-noto-color-emoji"):
        EmojiDataset(size=96)


def test_shipped_emoji_are_the_fonts_rendering_at_64_px():
    try:
        font_path = find_emoji_font()
    except FileNotFoundError:
        pytest.skip("compares the shipped emoji with the font: install fonts-noto-color-emoji to run it")
    shipped, rendered = EmojiDataset(size=64), EmojiDataset(size=64, font_path=font_path)
    if shipped.codepoints != rendered.codepoints:
        pytest.skip("this font is another version than the one the shipped emoji were rendered from")
    for i in (0, 500, len(shipped) - 1):
        assert torch.equal(shipped[i][0], rendered[i][0]), shipped.names[i]


def test_emoji_missing_font_error_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
        EmojiDataset(font_path=tmp_path / "missing.ttf")


# --------------------------------------------------------------------------------------------
# Image folder


def _save(image, path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def test_folder_reads_metadata_jsonl_captions(tmp_path):
    _save(Image.new("RGB", (20, 20), "red"), tmp_path / "a.png")
    _save(Image.new("RGB", (20, 20), "blue"), tmp_path / "sub" / "b.jpg")
    lines = [{"file_name": "a.png", "text": "a red thing"},
             {"file_name": "sub/b.jpg", "caption": "a blue thing"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    ds = ImageFolderDataset(tmp_path, size=16)
    assert sorted(ds.captions()) == ["a blue thing", "a red thing"]
    image, caption = ds[ds.captions().index("a red thing")]
    assert image.shape == (3, 16, 16) and image[0].mean() > 0.95 and image[2].mean() < 0.05


def test_folder_reads_txt_captions(tmp_path):
    _save(Image.new("RGB", (20, 20), "green"), tmp_path / "g.png")
    (tmp_path / "g.txt").write_text("a green thing\n")
    ds = ImageFolderDataset(tmp_path, size=8)
    assert len(ds) == 1 and ds[0][1] == "a green thing"


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGBA", (30, 60), (255, 0, 0, 128)),
    lambda: Image.new("RGB", (50, 40), "red").convert("P", palette=Image.ADAPTIVE),
    lambda: Image.new("L", (40, 50), 128),
    lambda: Image.fromarray(np.full((40, 30), 40_000, dtype=np.uint16)),
    lambda: Image.new("1", (30, 30), 1),
], ids=["rgba_30x60", "p", "l", "16bit", "1bit"])
def test_folder_loads_any_mode_as_rgb_square(tmp_path, make):
    _save(make(), tmp_path / "x.png")
    (tmp_path / "x.txt").write_text("something")
    image, _ = ImageFolderDataset(tmp_path, size=24)[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    _save(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), tmp_path / "c.jpg")  # CMYK red
    (tmp_path / "c.txt").write_text("red")
    image, _ = ImageFolderDataset(tmp_path, size=8)[0]
    assert image.shape == (3, 8, 8) and image[0].mean() > 0.9 and image[1].mean() < 0.1


def test_16bit_greyscale_is_scaled_not_clipped():
    white = to_square_tensor(Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)), 8)
    mid = to_square_tensor(Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)), 8)
    assert torch.allclose(white, torch.ones_like(white))
    assert (mid - 0.5).abs().max() < 0.01


def test_transparent_pixels_become_white():
    image = to_square_tensor(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), 8)
    assert torch.allclose(image, torch.ones_like(image))


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 20), "red")
    image.paste((0, 0, 255), (0, 10, 20, 20))  # stored: red top, blue bottom
    exif = Image.Exif()
    exif[0x0112] = 3  # Orientation: rotate 180 to display
    path = _save(image, tmp_path / "r.png", exif=exif)
    with Image.open(path) as reloaded:
        x = to_square_tensor(reloaded, 20)
    assert x[2, 0].mean() > 0.75 and x[0, -1].mean() > 0.75  # displayed: blue top, red bottom


def test_folder_centre_crops_instead_of_stretching(tmp_path):
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 0, 255), (30, 0, 60, 30))  # left and right thirds red, middle blue
    _save(wide, tmp_path / "w.png")
    (tmp_path / "w.txt").write_text("blue in the middle")
    image, _ = ImageFolderDataset(tmp_path, size=16)[0]
    blue = (image[2] > 0.75) & (image[0] < 0.25)
    assert blue.float().mean() > 0.9


def test_folder_skips_and_counts_corrupt_files(tmp_path):
    _save(Image.new("RGB", (20, 20), "red"), tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    truncated = _save(Image.new("RGB", (64, 64), "blue"), tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    for stem in ("good", "bad", "cut"):
        (tmp_path / f"{stem}.txt").write_text(stem)
    with pytest.warns(UserWarning, match="skipped 2") as record:
        ds = ImageFolderDataset(tmp_path, size=8)
    assert len(record) == 1
    assert len(ds) == 1 and ds[0][1] == "good"
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in ds.skipped) == ["bad.png", "cut.jpg"]


def test_folder_skips_and_counts_images_without_captions(tmp_path):
    _save(Image.new("RGB", (20, 20), "red"), tmp_path / "a.png")
    _save(Image.new("RGB", (20, 20), "red"), tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("a")
    with pytest.warns(UserWarning, match="no caption"):
        ds = ImageFolderDataset(tmp_path, size=8)
    assert len(ds) == 1 and [p.endswith("b.png") for p, _ in ds.skipped] == [True]


def test_folder_without_usable_images_raises_naming_root(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))) as info:
        ImageFolderDataset(tmp_path)
    assert "metadata.jsonl" in str(info.value) and ".txt" in str(info.value)


# --------------------------------------------------------------------------------------------
# Hugging Face datasets


@pytest.fixture
def hf_images():
    return [Image.new("RGB", (40, 20), c) for c in ("red", "green", "blue")]


def test_hf_dataset_wraps_map_style(hf_images):
    import datasets

    ds = datasets.Dataset.from_dict({"image": hf_images, "text": ["r", "g", "b"]})
    wrapped = HFImageTextDataset(ds, size=16)
    assert len(wrapped) == 3 and wrapped.captions() == ["r", "g", "b"]
    image, caption = wrapped[2]
    assert caption == "b" and torch.equal(image, to_square_tensor(hf_images[2], 16))


def test_hf_dataset_custom_columns_and_undecoded_images(hf_images):
    import datasets

    ds = datasets.Dataset.from_dict({"pic": hf_images, "caption": ["r", "g", "b"]})
    ds = ds.cast_column("pic", datasets.Image(decode=False))  # rows hold {"bytes", "path"}
    image, caption = HFImageTextDataset(ds, image_column="pic", caption_column="caption", size=8)[0]
    assert caption == "r" and image.shape == (3, 8, 8) and image[0].mean() > 0.75


def test_hf_missing_column_error_lists_columns(hf_images):
    import datasets

    ds = datasets.Dataset.from_dict({"image": hf_images, "caption": ["r", "g", "b"]})
    with pytest.raises(ValueError, match=r"caption_column='text'.*\['image', 'caption'\]"):
        HFImageTextDataset(ds)
    with pytest.raises(ValueError, match=r"image_column='img'.*\['image', 'caption'\]"):
        HFImageTextDataset(ds, image_column="img", caption_column="caption")


def test_hf_streamed_dataset_yields_samples(hf_images):
    import datasets

    ds = datasets.Dataset.from_dict({"image": hf_images, "text": ["r", "g", "b"]})
    streamed = ds.to_iterable_dataset()
    with pytest.raises(ValueError, match="HFIterableImageTextDataset"):
        HFImageTextDataset(streamed)
    samples = list(HFIterableImageTextDataset(streamed, size=8))
    assert [c for _, c in samples] == ["r", "g", "b"]
    assert all(image.shape == (3, 8, 8) for image, _ in samples)


# --------------------------------------------------------------------------------------------
# Text-embedding cache


class FakeEncoder:
    """Deterministic stand-in for t5_encode_text: counts calls, pads to max_length like T5."""

    def __init__(self, dim=8, max_length=12, salt=""):
        self.dim, self.max_length, self.salt, self.calls = dim, max_length, salt, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        embeds = torch.zeros(len(texts), self.max_length, self.dim)
        mask = torch.zeros(len(texts), self.max_length, dtype=torch.bool)
        for i, text in enumerate(texts):
            n = min(len(text.split()) + 1, self.max_length)  # words + an end token
            seed = int(hashlib.sha256((self.salt + text).encode()).hexdigest()[:8], 16)
            embeds[i, :n] = torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed))
            mask[i, :n] = True
        return embeds, mask


CAPTIONS = ["a red circle on a blue background", "a cat",
            "a large white square on a black background"]


def test_cache_second_encode_calls_encoder_zero_times(tmp_path):
    fake = FakeEncoder()
    cache = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=fake)
    first = cache.encode(CAPTIONS)
    assert len(fake.calls) == 1 and (cache.hits, cache.misses) == (0, 3)
    second = cache.encode(CAPTIONS)
    assert len(fake.calls) == 1 and (cache.hits, cache.misses) == (3, 3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_cache_matches_direct_encode_after_padding(tmp_path):
    fake = FakeEncoder()
    embeds, mask = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=fake).encode(CAPTIONS)
    direct_embeds, direct_mask = FakeEncoder()(CAPTIONS)
    n = embeds.shape[1]
    assert n == int(direct_mask.sum(1).max())  # padded to the longest in the batch
    assert embeds.dtype == torch.float32 and mask.dtype == torch.bool
    assert torch.equal(mask, direct_mask[:, :n]) and torch.equal(embeds, direct_embeds[:, :n])
    assert not direct_mask[:, n:].any()


def test_cache_encodes_only_misses_in_one_call(tmp_path):
    fake = FakeEncoder()
    cache = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=fake)
    cache.encode(["a", "b"])
    cache.encode(["a", "c", "d", "c"])
    assert fake.calls == [["a", "b"], ["c", "d"]]


def test_cache_persists_on_disk_across_instances(tmp_path):
    first = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=FakeEncoder())
    expected = first.encode(CAPTIONS)
    fake = FakeEncoder()
    second = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=fake)
    got = second.encode(CAPTIONS)
    assert fake.calls == [] and second.hits == 3
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_cache_files_hold_unpadded_rows_and_no_temp_files(tmp_path):
    from safetensors.torch import load_file

    cache = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=FakeEncoder())
    cache.encode(["a cat"])
    files = list((tmp_path / "fake").iterdir())
    assert [f.suffix for f in files] == [".safetensors"]
    rows = load_file(str(files[0]))["embeds"]
    assert rows.shape == (3, 8) and rows.dtype == torch.float32


def test_cache_keeps_encoders_apart(tmp_path):
    a = TextEmbeddingCache("enc/a", cache_dir=tmp_path, encode_fn=FakeEncoder(salt="a"))
    b = TextEmbeddingCache("enc_a", cache_dir=tmp_path, encode_fn=FakeEncoder(salt="b"))
    ea, _ = a.encode(["a cat"])
    eb, _ = b.encode(["a cat"])
    assert not torch.equal(ea, eb)
    fresh_a = TextEmbeddingCache("enc/a", cache_dir=tmp_path, encode_fn=FakeEncoder(salt="x"))
    assert torch.equal(fresh_a.encode(["a cat"])[0], ea)


def test_cache_default_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMAGEN_CACHE", str(tmp_path / "env"))
    cache = TextEmbeddingCache("fake", encode_fn=FakeEncoder())
    cache.encode(["a cat"])
    assert len(list((tmp_path / "env" / "fake").glob("*.safetensors"))) == 1


def test_precompute_warms_cache_once_per_distinct_caption(tmp_path):
    fake = FakeEncoder()
    cache = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=fake)
    ds = ShapesDataset(size=8, length=500)
    assert cache.precompute(ds, batch_size=64, progress=False) == len(set(ds.captions()))
    assert cache.precompute(ds, progress=False) == 0
    calls = len(fake.calls)
    cache.encode(ds.captions()[:50])
    assert len(fake.calls) == calls


def test_collator_builds_training_batch(tmp_path):
    cache = TextEmbeddingCache("fake", cache_dir=tmp_path, encode_fn=FakeEncoder(dim=8))
    ds = ShapesDataset(size=16, length=10)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=TextImageCollator(cache))
    batch = next(iter(loader))
    assert set(batch) == {"images", "texts", "text_embeds", "text_masks"}
    assert batch["images"].shape == (4, 3, 16, 16)
    assert batch["texts"] == [ds[i][1] for i in range(4)]
    b, n, d = batch["text_embeds"].shape
    assert (b, d) == (4, 8) and batch["text_masks"].shape == (4, n)
    assert batch["text_masks"].dtype == torch.bool
    assert (batch["text_embeds"][~batch["text_masks"]] == 0).all()


def test_cache_default_encoder_matches_t5_module(tmp_path):
    t5 = pytest.importorskip("minimagen.t5")
    cache = TextEmbeddingCache("minilm", cache_dir=tmp_path, max_length=32)
    try:
        embeds, mask = cache.encode(CAPTIONS[:2])
    except (OSError, ImportError) as e:  # encoder weights not available offline here
        pytest.skip(f"minilm encoder unavailable: {e}")
    direct_embeds, direct_mask = t5.t5_encode_text(CAPTIONS[:2], name="minilm", max_length=32)
    n = embeds.shape[1]
    assert embeds.shape[2] == t5.get_encoded_dim("minilm")
    assert torch.equal(mask, direct_mask[:, :n].cpu())
    assert torch.allclose(embeds, direct_embeds[:, :n].float().cpu())
