"""The order in which training sees the data: a pure function of (seed, position), so a run resumes exactly.

    StepSampler          dataset indices at positions [start, start + count) of an endless stream of
                         shuffled epochs
    mix_seed             a stable 63-bit seed from a tuple of integers (seed, U-Net, epoch, step, ...)
    collate_images_and_texts   the batches' shape before the captions are encoded
"""

import hashlib

import torch


def mix_seed(*numbers) -> int:
    """A 63-bit seed from a tuple of integers (stable across runs and machines, unlike hash())."""
    digest = hashlib.sha256("/".join(str(int(n)) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class StepSampler(torch.utils.data.Sampler):
    """Dataset indices at positions [start, start + count) of an endless stream of shuffled epochs.

    Epoch e is a permutation of range(n) drawn from a torch.Generator seeded by (seed, e); position
    p is element p % n of epoch p // n. So the data order is a pure function of (seed, position) and
    a resumed run picks up at exactly the saved position. (No `generator` or `set_epoch` attribute:
    accelerate would take those over.)
    """

    def __init__(self, n: int, seed: int, start: int, count: int):
        self.n, self.seed, self.start, self.count = n, seed, start, count

    def __len__(self):
        return self.count

    def __iter__(self):
        position, end = self.start, self.start + self.count
        while position < end:
            epoch, offset = divmod(position, self.n)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
            take = min(self.n - offset, end - position)
            yield from order[offset:offset + take].tolist()
            position += take


def collate_images_and_texts(batch) -> dict:
    """list of (image (3, s, s), caption) -> {"images": (b, 3, s, s), "texts": b str} (embeddings come later)."""
    return {"images": torch.stack([image for image, _ in batch]), "texts": [caption for _, caption in batch]}
