"""Text-embedding cache: encode each caption once per encoder, then read it back from disk.

Running a frozen text encoder (T5, MiniLM) on every training step repeats the same work
thousands of times: the shapes dataset has only ~150 distinct captions. TextEmbeddingCache
encodes each caption once, keeps the result in memory and in one small safetensors file per
(encoder, max_length, caption), and pads cached rows back into a batch on request.

    cache = TextEmbeddingCache("t5_small")
    cache.precompute(dataset)                  # optional: encode all captions up front, with a bar
    loader = DataLoader(dataset, batch_size=32, collate_fn=TextImageCollator(cache))
    batch = next(iter(loader))                 # {"images", "texts", "text_embeds", "text_masks"}

On disk: `cache_dir/<encoder name, sanitised>/<sha256 of encoder, max_length, caption>.safetensors`
holding `embeds` (n_i, d) float32, only the real (unpadded) tokens; n_i is its length.
"""
import hashlib
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def default_cache_dir():
    """$MINIMAGEN_CACHE if set, else ~/.cache/minimagen/text_embeds."""
    return Path(os.environ.get("MINIMAGEN_CACHE") or "~/.cache/minimagen/text_embeds").expanduser()


def _sanitise(name):
    """Encoder name -> a safe folder name ("google/t5-v1_1-base" -> "google_t5-v1_1-base")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "encoder"


def pad_rows(rows):
    """List of b tensors (n_i, d) -> (embeds (b, n, d) float32 zero-padded, mask (b, n) bool).

    n is the longest n_i (at least 1, so attention always has a key to look at).
    """
    b, d = len(rows), rows[0].shape[-1]
    n = max(1, max(r.shape[0] for r in rows))
    embeds = torch.zeros(b, n, d, dtype=torch.float32)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, r in enumerate(rows):
        embeds[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return embeds, mask


class TextEmbeddingCache:
    """Caption -> text embedding, computed once per encoder and kept in memory and on disk.

    encoder_name: e.g. "t5_small" or the offline "minilm"; part of every key, so encoders never
        share entries. cache_dir: root folder (default: default_cache_dir()).
    encode_fn: texts (list of b str) -> (embeds (b, n, d), mask (b, n) bool, right-padded);
        default minimagen.t5.t5_encode_text(texts, name=encoder_name, max_length=max_length).
    max_length: token limit; part of the key too, since it changes long captions' embeddings.
    Counters: hits (captions served from memory or disk), misses (captions that needed encoding).
    """

    def __init__(self, encoder_name, cache_dir=None, encode_fn=None, max_length=256):
        if not isinstance(encoder_name, str) or not encoder_name:
            raise ValueError(f"encoder_name must be a non-empty str, got {encoder_name!r}")
        self.encoder_name, self.max_length = encoder_name, max_length
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.dir = root / _sanitise(encoder_name)
        self.encode_fn = encode_fn if encode_fn is not None else self._t5_encode
        self.memory = {}  # key -> embeds (n_i, d) float32 on the CPU
        self.hits = self.misses = 0

    def _t5_encode(self, texts):
        from minimagen.t5 import t5_encode_text  # lazy: loading encoders is slow and optional

        return t5_encode_text(texts, name=self.encoder_name, max_length=self.max_length)

    def key(self, caption):
        """sha256 hex of (encoder name, max_length, caption): the entry's file name."""
        text = f"{self.encoder_name}\0{self.max_length}\0{caption}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, caption):
        return self.dir / f"{self.key(caption)}.safetensors"

    def _lookup(self, caption):
        """Cached rows (n_i, d) for caption, from memory or disk, or None."""
        key = self.key(caption)
        if key in self.memory:
            return self.memory[key]
        path = self.dir / f"{key}.safetensors"
        if path.is_file():
            try:
                rows = load_file(str(path))["embeds"]
            except Exception:  # a damaged file is just a miss; it will be rewritten
                return None
            self.memory[key] = rows
            return rows
        return None

    def _store(self, caption, rows):
        key = self.key(caption)
        self.memory[key] = rows
        self.dir.mkdir(parents=True, exist_ok=True)
        # Atomic write: a reader (another DataLoader worker, a crashed run) sees either no file
        # or a complete one, never half of one. The temp file must be in the same folder for
        # os.replace to be a rename.
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        os.close(fd)
        try:
            metadata = {"encoder": self.encoder_name, "max_length": str(self.max_length),
                        "caption": caption}
            save_file({"embeds": rows.contiguous()}, tmp, metadata=metadata)
            os.replace(tmp, self.dir / f"{key}.safetensors")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def _encode_and_store(self, captions):
        """Run encode_fn once on distinct captions and cache each one's unpadded rows."""
        embeds, mask = self.encode_fn(list(captions))
        embeds, mask = embeds.detach().float().cpu(), mask.detach().bool().cpu()
        if embeds.ndim != 3 or mask.shape != embeds.shape[:2] or len(embeds) != len(captions):
            raise ValueError(f"encode_fn must return embeds (b, n, d) and mask (b, n) for "
                             f"b={len(captions)} texts; got {tuple(embeds.shape)} and "
                             f"{tuple(mask.shape)}")
        for caption, e, m in zip(captions, embeds, mask):
            n = int(m.sum())
            if not m[:n].all():
                raise ValueError("encode_fn must return right-padded masks (True tokens first)")
            self._store(caption, e[:n].clone())

    def encode(self, captions):
        """captions (list of b str) -> (embeds (b, n, d) float32, mask (b, n) bool), CPU.

        n is the longest caption in this batch; padded positions are zero. Captions not cached
        yet are encoded together in one call to encode_fn.
        """
        if isinstance(captions, str):
            raise ValueError("captions must be a list of str, got a single str")
        captions = list(captions)
        if not captions:
            raise ValueError("captions must hold at least one str")
        found = {}
        missing = []
        for caption in captions:
            rows = self._lookup(caption) if caption not in found else found[caption]
            if rows is None:
                self.misses += 1
                if caption not in missing:
                    missing.append(caption)
            else:
                self.hits += 1
                found[caption] = rows
        if missing:
            self._encode_and_store(missing)
            found.update({c: self.memory[self.key(c)] for c in missing})
        return pad_rows([found[c] for c in captions])

    def __contains__(self, caption):
        return self._lookup(caption) is not None

    def precompute(self, captions, batch_size=64, progress=True):
        """Encode every caption not yet cached, batch_size at a time; returns how many were new.

        captions: an iterable of str, or a dataset with a `captions()` method (all datasets in
        minimagen.data have one), so images are never drawn just to read their captions.
        """
        from tqdm.auto import tqdm

        if hasattr(captions, "captions"):
            captions = captions.captions()
        todo = [c for c in dict.fromkeys(captions) if c not in self]  # distinct, in order
        bar = tqdm(total=len(todo), desc=f"encoding captions ({self.encoder_name})",
                   disable=not progress or not todo)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            self._encode_and_store(chunk)
            self.misses += len(chunk)
            bar.update(len(chunk))
        bar.close()
        return len(todo)


class TextImageCollator:
    """DataLoader collate_fn: list of (image (3, s, s), caption) -> a training batch dict.

    {"images": (b, 3, s, s), "texts": list of b str, "text_embeds": (b, n, d) float32,
     "text_masks": (b, n) bool}. Embeddings come from the cache; call cache.precompute(dataset)
    first so DataLoader workers only read files and never run the text encoder themselves.
    """

    def __init__(self, cache):
        self.cache = cache

    def __call__(self, batch):
        images = torch.stack([image for image, _ in batch])
        texts = [caption for _, caption in batch]
        text_embeds, text_masks = self.cache.encode(texts)
        return {"images": images, "texts": texts, "text_embeds": text_embeds,
                "text_masks": text_masks}
