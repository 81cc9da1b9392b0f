"""Build a tiny, randomly initialised T5 encoder with its own sentencepiece tokenizer, for tests.

Everything is made locally (no hub): a unigram sentencepiece model is trained on a generated
corpus of captions, wrapped as a transformers T5Tokenizer, and saved next to a 2-layer T5 encoder
with d_model 32. The folder looks like one written by `save_pretrained` for a real T5.
"""
import os
import random

D_MODEL = 32

_ADJECTIVES = (
    "red blue green yellow purple orange black white small big tiny huge happy sad old young "
    "shiny fluffy wooden metal glass striped spotted bright dark"
).split()
_NOUNS = (
    "cat dog car house tree bird boat flower apple robot horse castle mountain lake cloud rocket "
    "guitar teapot umbrella bicycle penguin dragon lighthouse pumpkin"
).split()
_VERBS = "sitting standing sleeping flying running floating dancing painted drawn".split()
_PLACES = (
    "on a table", "in a park", "under the sea", "near a river", "in space", "on the beach",
    "at night", "in the snow", "inside a forest", "next to a window",
)


def caption_corpus(n=2000, seed=0):
    """n caption-like sentences such as 'a fluffy penguin sleeping on the beach'."""
    rng = random.Random(seed)
    return [
        f"a {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} {rng.choice(_PLACES)}"
        for _ in range(n)
    ]


def build_tiny_t5(folder, vocab_size=160, seed=0):
    """Write a tiny T5 encoder (config, weights, tokenizer) into `folder` and return `folder`."""
    import sentencepiece as spm
    import torch
    import transformers

    os.makedirs(folder, exist_ok=True)
    # T5's id conventions: <pad>=0, </s>=1, <unk>=2 and no <s>. hard_vocab_limit=False lets the
    # trainer stop below vocab_size when the small corpus has fewer useful pieces.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(caption_corpus(seed=seed)),
        model_prefix=os.path.join(folder, "spiece"),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    os.remove(os.path.join(folder, "spiece.vocab"))  # human-readable copy, not needed

    # from_pretrained, not T5Tokenizer(vocab_file=...): transformers 5 ignores vocab_file in the
    # constructor and silently builds a 4-token vocabulary; from_pretrained converts spiece.model.
    tokenizer = transformers.T5Tokenizer.from_pretrained(folder)  # adds T5's 100 <extra_id_*>
    config = transformers.T5Config(
        vocab_size=len(tokenizer),
        d_model=D_MODEL, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.T5EncoderModel(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
