"""Tests for minimagen.t5: name resolution, local and offline encoders, caching, errors."""
import os
import shutil

import pytest
import torch
import transformers

from minimagen.t5 import (
    DEFAULT_T5_NAME,
    OFFLINE_ENCODER_NAME,
    T5_VERSIONS,
    TextEncoderNotAvailableError,
    clear_cache,
    encode_text,
    get_encoded_dim,
    get_encoder,
    t5_encode_text,
)
from tiny_t5 import D_MODEL, build_tiny_t5

TEXTS = ["a red cat", "a big fluffy dog sleeping on the beach at night", ""]


@pytest.fixture(scope="session")
def tiny_t5_folder(tmp_path_factory):
    return build_tiny_t5(str(tmp_path_factory.mktemp("tiny_t5")))


@pytest.fixture
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _fail(*args, **kwargs):
    raise AssertionError("from_pretrained must not be called")


def _mean(embeds, mask):
    """Mean over real tokens: (b, n, d), (b, n) -> (b, d)."""
    return (embeds * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def test_tiny_t5_from_local_folder_gives_masked_embeddings(tiny_t5_folder):
    embeds, mask = t5_encode_text(TEXTS, name=tiny_t5_folder, device="cpu")
    b, n, d = embeds.shape
    assert (b, d) == (3, D_MODEL) and embeds.dtype == torch.float32
    assert mask.shape == (b, n) and mask.dtype == torch.bool
    tokenizer, _ = get_encoder(tiny_t5_folder, device="cpu")
    expected = tokenizer(TEXTS, padding="longest", return_tensors="pt")["attention_mask"].bool()
    assert torch.equal(mask, expected)
    assert not mask.all(), "the texts have different lengths, so some positions are padding"
    assert torch.all(embeds[~mask] == 0)
    assert torch.all(embeds[mask].abs().sum(-1) > 0)


def test_folder_accepts_pathlike(tiny_t5_folder):
    from pathlib import Path

    by_str, _ = t5_encode_text("a red cat", name=tiny_t5_folder, device="cpu")
    by_path, _ = t5_encode_text("a red cat", name=Path(tiny_t5_folder), device="cpu")
    assert torch.equal(by_str, by_path)


def test_sentencepiece_only_folder_loads_like_tokenizer_json_folder(tiny_t5_folder, tmp_path):
    folder = tmp_path / "spm_only"
    shutil.copytree(tiny_t5_folder, folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(folder / f)
    assert (folder / "spiece.model").exists()
    expected, expected_mask = t5_encode_text(TEXTS, name=tiny_t5_folder, device="cpu")
    embeds, mask = t5_encode_text(TEXTS, name=str(folder), device="cpu")
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(embeds, expected)


def test_encoded_dim_of_local_folder_reads_config(tiny_t5_folder):
    assert get_encoded_dim(tiny_t5_folder) == D_MODEL


def test_encoded_dim_of_known_names_loads_nothing(monkeypatch):
    for cls in (transformers.AutoModel, transformers.T5EncoderModel, transformers.AutoConfig,
                transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", _fail)
    expected = {"t5_small": 512, "t5_base": 768, "t5_large": 1024, "t5_3b": 1024, "t5_11b": 1024,
                "small1.1": 512, "base1.1": 768, "large1.1": 1024, "xl1.1": 2048, "xxl1.1": 4096}
    assert {name: get_encoded_dim(name) for name in T5_VERSIONS} == expected
    assert get_encoded_dim("t5-small") == 512
    assert get_encoded_dim("google/t5-v1_1-small") == 512
    assert get_encoded_dim("google/t5-v1_1-xxl") == 4096
    for alias in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert get_encoded_dim(alias) == 384


def test_minilm_returns_384_wide_token_embeddings():
    embeds, mask = t5_encode_text(TEXTS, name=OFFLINE_ENCODER_NAME, device="cpu")
    assert embeds.shape[0] == 3 and embeds.shape[2] == 384 == get_encoded_dim("minilm")
    assert mask.dtype == torch.bool and torch.all(embeds[~mask] == 0)


def test_minilm_pretrained_weights_place_similar_captions_closer():
    texts = ["a photo of a cat", "a picture of a kitten", "quarterly interest rates rose sharply"]
    embeds, mask = t5_encode_text(texts, name="minilm", device="cpu")
    m = torch.nn.functional.normalize(_mean(embeds, mask), dim=-1)
    similar, unrelated = (m[0] @ m[1]).item(), (m[0] @ m[2]).item()
    assert similar > unrelated + 0.2, (similar, unrelated)


def test_minilm_is_deterministic_across_reloads(fresh_cache):
    first, first_mask = t5_encode_text(TEXTS, name="minilm", device="cpu")
    clear_cache()  # a reload would differ if any weight were randomly initialised
    second, second_mask = t5_encode_text(TEXTS, name="all-MiniLM-L6-v2", device="cpu")
    assert torch.equal(first_mask, second_mask) and torch.equal(first, second)


def test_loading_an_encoder_prints_no_weight_loading_bar_and_keeps_bars_enabled(fresh_cache, capfd):
    transformers.utils.logging.enable_progress_bar()
    t5_encode_text(TEXTS, name="minilm", device="cpu")
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert transformers.utils.logging.is_progress_bar_enabled()  # the user's setting is put back


def test_minilm_truncates_to_its_256_token_limit():
    _, mask = t5_encode_text("cat " * 400, name="minilm", max_length=1000, device="cpu")
    assert mask.shape == (1, 256)


def test_encoder_is_loaded_once_and_cached(tiny_t5_folder, fresh_cache, monkeypatch):
    calls = []
    original = transformers.T5EncoderModel.from_pretrained

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.T5EncoderModel, "from_pretrained", counting)
    first = get_encoder(tiny_t5_folder, device="cpu")
    t5_encode_text(TEXTS, name=tiny_t5_folder, device="cpu")
    second = get_encoder(tiny_t5_folder, device="cpu")
    assert len(calls) == 1
    assert first[0] is second[0] and first[1] is second[1]


def test_outputs_carry_no_grad_and_model_is_frozen_in_eval_mode(tiny_t5_folder):
    embeds, _ = t5_encode_text(TEXTS, name=tiny_t5_folder, device="cpu")
    assert not embeds.requires_grad and not embeds.is_inference()
    _, model = get_encoder(tiny_t5_folder, device="cpu")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    # Plain tensors (not inference tensors) can feed a trainable layer and be backpropagated through.
    layer = torch.nn.Linear(D_MODEL, 1)
    layer(embeds).sum().backward()
    assert layer.weight.grad is not None


def test_hub_name_offline_raises_clear_error():
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo, "config.json"), str)
           for repo in ("t5-small", "google-t5/t5-small")):
        pytest.skip("t5-small is in the local hub cache, so it would load")
    assert DEFAULT_T5_NAME == "t5_small"
    with pytest.raises(TextEncoderNotAvailableError) as info:
        t5_encode_text("a red cat", name="t5_small", device="cpu")
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "'t5_small'" in message and 'name="minilm"' in message and "local folder" in message
    assert "\n" not in message and info.value.__cause__ is not None


def test_unknown_hub_id_raises_clear_error_for_encoding_and_dim():
    for call in (lambda: t5_encode_text("x", name="nobody/no-such-t5", device="cpu"),
                 lambda: get_encoded_dim("nobody/no-such-t5")):
        with pytest.raises(TextEncoderNotAvailableError, match="minilm"):
            call()


@pytest.mark.parametrize("bad", ["t5_smal", "", "not a model", 3])
def test_unknown_name_raises_value_error_naming_name(bad):
    with pytest.raises(ValueError, match=r"^name ") as info:
        t5_encode_text("a red cat", name=bad, device="cpu")
    assert "local folder" in str(info.value) and "t5_small, " in str(info.value)
    with pytest.raises(ValueError, match=r"^name "):
        get_encoded_dim(bad)


def test_misspelt_name_suggests_the_close_match():
    with pytest.raises(ValueError, match="Did you mean 't5_small'"):
        get_encoder("t5_smal")


def test_folder_without_config_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        t5_encode_text("a red cat", name=str(tmp_path), device="cpu")


def test_single_string_is_a_batch_of_one(tiny_t5_folder):
    embeds, mask = encode_text("a red cat", name=tiny_t5_folder, device="cpu")
    batched, batched_mask = t5_encode_text(["a red cat"], name=tiny_t5_folder, device="cpu")
    assert embeds.shape[0] == 1 and mask.all()
    assert torch.equal(embeds, batched) and torch.equal(mask, batched_mask)


def test_max_length_truncates(tiny_t5_folder):
    long_caption = "a fluffy penguin sleeping on the beach next to a wooden lighthouse " * 5
    embeds, mask = t5_encode_text([long_caption, "a cat"], name=tiny_t5_folder, max_length=7,
                                  device="cpu")
    assert embeds.shape == (2, 7, D_MODEL) and mask[0].all() and not mask[1].all()


@pytest.mark.parametrize("bad", [0, -3, 2.5, None])
def test_bad_max_length_is_a_value_error(tiny_t5_folder, bad):
    with pytest.raises(ValueError, match="^max_length"):
        t5_encode_text("a cat", name=tiny_t5_folder, max_length=bad, device="cpu")


@pytest.mark.parametrize("bad", [[], ["ok", 3], None])
def test_bad_texts_is_a_value_error(tiny_t5_folder, bad):
    with pytest.raises(ValueError, match="^texts"):
        t5_encode_text(bad, name=tiny_t5_folder, device="cpu")


def test_device_argument_is_respected(tiny_t5_folder):
    for device in ("cpu", torch.device("cpu")):
        embeds, mask = t5_encode_text("a cat", name=tiny_t5_folder, device=device)
        assert embeds.device.type == mask.device.type == "cpu"
        _, model = get_encoder(tiny_t5_folder, device)
        assert next(model.parameters()).device.type == "cpu"
    embeds, _ = t5_encode_text("a cat", name=tiny_t5_folder)
    assert embeds.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
