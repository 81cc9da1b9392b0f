"""The machinery every checker shares: how a check runs, reports and compares.

A checker is `func(fn) -> pass message`, wrapped by `_checker`, which prints ONE line and returns True
(it matches) or False:

    ✓ check_posterior: matches minimagen: mean and var (max |diff| < 1e-6)
    ✗ check_forward_jump: x_t off by up to 0.62 (worst at [3, 1, 4, 7]: got 0.25, expected 0.87) — missing sqrt ...
    ✗ Exercise 1.3 is not done yet: <the blank's message>

Inside a checker, `_call` runs the learner's function (a NotImplementedError becomes "not done yet",
any other error one line with a hint from the table below), `_compare` compares its tensor with the
reference (shape, dtype, device, NaN/inf, then the values and where they are off, then the known wrong
variants, each with its hint), and `_passed` words the line of a pass. `_Failed("...")` fails a check
with that line.

Checks run on the CPU with one thread, never touch the global random state (they seed their own),
and take well under a second. The small seeded inputs that several chapters use live at the end.
"""

import functools
import math
import re

import torch

from ..diffusion import GaussianDiffusion
from ..Unet import Unet

# Hints for errors raised by the learner's code, matched on the error message.
_BROADCAST_HINT = (
    "give per-image values trailing singleton dims so they broadcast over the image, "
    "e.g. (b,) -> (b, 1, 1, 1) with .view(-1, 1, 1, 1), or (b, c) -> (b, c, 1, 1)"
)
_COMMON_HINTS = (
    ("must match the size of tensor", _BROADCAST_HINT),
    ("out of bounds", "t runs over 0..T-1 and indexes the schedule directly: use alphas_cumprod[t], not [t + 1]"),
    ("index out of range", "t runs over 0..T-1 and indexes the schedule directly: use alphas_cumprod[t], not [t + 1]"),
)


class _Failed(Exception):
    """The check failed; str(self) is the line to print after the check's name."""


class _NotDone(Exception):
    """The learner's function raised NotImplementedError; str(self) is its message."""


def _checker(func):
    """Turn `func(fn) -> pass message` (raising _Failed / _NotDone) into a printing, bool-returning check."""
    name = func.__name__

    @functools.wraps(func)
    def check(fn, *args, **kwargs):
        if not callable(fn):
            print(f"✗ {name}: pass your function itself, e.g. {name}(my_function), got {type(fn).__name__}")
            return False
        threads = torch.get_num_threads()
        try:
            # One thread: the inputs are tiny, and on a busy machine several threads only wait for each other.
            torch.set_num_threads(1)
            with torch.random.fork_rng(devices=[]):  # leave the notebook's random state untouched
                torch.manual_seed(0)
                message = func(fn, *args, **kwargs)
        except _NotDone as done:
            print(_not_done_line(name, str(done)))
            return False
        except _Failed as failed:
            print(f"✗ {name}: {failed}")
            return False
        finally:
            torch.set_num_threads(threads)
        print(f"✓ {name}: {message}")
        return True

    return check


def _not_done_line(name: str, message: str) -> str:
    match = re.match(r"\s*(Exercise\s+\d+(?:\.\d+)*)\s*:?\s*(.*)", message, re.S)
    if match:
        hint = match[2].strip()
        return f"✗ {match[1]} is not done yet" + (f": {hint}" if hint else "")
    return f"✗ {name}: your function is not done yet (NotImplementedError{': ' + message if message else ''})"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _call(fn, *args, hints=(), **kwargs):
    """Run the learner's function; turn its exceptions into one-line failures."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        raise _NotDone(str(error)) from None
    except Exception as error:  # noqa: BLE001 - any error of the learner's code is reported, not raised
        text = str(error)
        message = f"your function raised {type(error).__name__}: {_first_line(text)}"
        for pattern, hint in (*hints, *_COMMON_HINTS):
            if pattern in text:
                message += f" — {hint}"
                break
        raise _Failed(message) from None


def _index(flat_index: int, shape) -> str:
    idx = []
    for size in reversed(tuple(shape)):
        idx.append(flat_index % size)
        flat_index //= size
    return "[" + ", ".join(str(i) for i in reversed(idx)) + "]"


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return a.shape == b.shape and bool(((a - b).abs() <= atol + rtol * b.abs()).all())


def _diff_text(diff: float) -> str:
    """A rounded bound on the difference, stable from run to run: '< 1e-6', '< 1e-5', ..."""
    if diff < 1e-6:
        return "< 1e-6"
    exponent = math.floor(-math.log10(diff))
    return f"< 1e-{exponent}" if exponent > 0 else f"{diff:.2g}"


def _compare(got, expected: torch.Tensor, *, what: str, variants=(), atol: float = 1e-5, rtol: float = 1e-4,
             shape_hint=None, nan_hint=None, cause=None) -> float:
    """Compare the learner's tensor with the reference; return max |diff| or raise _Failed with a hint.

    variants: (tensor or zero-argument callable, hint) pairs, known wrong answers tried in order when
    the values are off. shape_hint(got) / nan_hint(got) may return a hint for those failures. cause: a hint
    from `_earlier` (an earlier exercise this one calls is wrong); it comes first in every failure.
    """
    if cause is not None and not _agrees(got, expected):
        raise _Failed(cause)
    if not torch.is_tensor(got):
        raise _Failed(f"{what} should be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        hint = shape_hint(got) if shape_hint else None
        raise _Failed(f"wrong shape for {what}: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
                      + (f" — {hint}" if hint else ""))
    if got.device != expected.device:
        raise _Failed(f"{what} is on the wrong device: expected {expected.device} (where the inputs are), "
                      f"got {got.device} — make new tensors with device=x.device instead of a fixed device")
    if got.dtype != expected.dtype:
        raise _Failed(f"wrong dtype for {what}: expected {expected.dtype}, got {got.dtype}")
    got_d, expected_d = got.detach().double(), expected.detach().double()
    finite = torch.isfinite(got_d)
    if not finite.all():
        flat = int((~finite).flatten().nonzero()[0])
        kind = "NaN" if torch.isnan(got_d.flatten()[flat]) else "inf"
        hint = nan_hint(got) if nan_hint else None
        raise _Failed(f"{what} contains {kind} (first at {_index(flat, got.shape)})" + (f" — {hint}" if hint else ""))
    diff = (got_d - expected_d).abs()
    if bool((diff <= atol + rtol * expected_d.abs()).all()):
        return float(diff.max()) if diff.numel() else 0.0
    flat = int(diff.flatten().argmax())
    worst, value, wanted = (float(t.flatten()[flat]) for t in (diff, got_d, expected_d))
    if got.ndim == 0:
        line = f"{what} is {value:.4g}, expected {wanted:.4g} (off by {worst:.3g})"
    else:
        line = (f"{what} off by up to {worst:.3g} (worst at {_index(flat, got.shape)}: "
                f"got {value:.4g}, expected {wanted:.4g})")
    for variant, hint in variants:
        try:
            value = variant() if callable(variant) else variant
        except Exception:  # noqa: BLE001 - a variant that cannot be formed is just not this mistake
            continue
        if torch.is_tensor(value) and _close(got_d, value, atol, rtol):
            raise _Failed(f"{line} — {hint}")
    raise _Failed(line)


def _passed(diff: float, extra: str = "", against: str = "minimagen") -> str:
    """The pass line: what the answer was compared with (minimagen, or the reference the checker writes out)."""
    return f"matches {against}{extra} (max |diff| {_diff_text(diff)})"


def _agrees(got, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """got is a tensor equal to expected once both are broadcast (a (b, 1, 1, 1) variance is fine)."""
    if not torch.is_tensor(got):
        return False
    try:
        g, e = torch.broadcast_tensors(got.detach().double(), expected.detach().double())
    except RuntimeError:
        return False
    return g.shape == expected.shape and bool(((g - e).abs() <= atol + rtol * e.abs()).all())


def _earlier(fn, label: str, check_name: str, args, reference):
    """Run the learner's answer to an EARLIER exercise that the current one calls.

    Returns None when it agrees with `reference` (a tensor or a tuple of tensors), else a hint that names
    the earlier exercise, so that a failure it causes is not blamed on the current one.
    """
    if fn is None:
        return None
    try:
        got = _call(fn, *args)
    except _NotDone:
        return f"this function calls your answer to {label}, which is not done yet: do {label} first"
    except _Failed as failed:
        return (f"this function calls your answer to {label}, which fails ({failed}): "
                f"run {check_name} and fix {label} first")
    expected = reference if isinstance(reference, tuple) else (reference,)
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(got) == len(expected) and all(_agrees(g, e) for g, e in zip(got, expected)):
        return None
    return f"this function calls your answer to {label}, which is wrong: run {check_name} and fix {label} first"


def _b(values: torch.Tensor) -> torch.Tensor:
    """(b,) -> (b, 1, 1, 1)."""
    return values.view(-1, 1, 1, 1)


# Inputs several chapters share ---------------------------------------------------------------------


def _schedule_inputs(timesteps: int = 100):
    g = torch.Generator().manual_seed(1)
    schedule = GaussianDiffusion("cosine", timesteps)
    x = torch.randn(4, 3, 8, 8, generator=g)
    noise = torch.randn(4, 3, 8, 8, generator=g)
    return schedule, x, noise


def _tiny_unet():
    """A seeded U-Net of a few thousand parameters, on 8x8 images and 16-d text, with a random output layer."""
    unet = Unet(dim=8, dim_mults=(1, 2), text_embed_dim=16, num_resnet_blocks=1, layer_attns=False,
                layer_cross_attns=(False, True), attn_heads=2, attn_dim_head=8)
    with torch.no_grad():  # minimagen zero-initialises these; random values make the checks sharper
        torch.nn.init.normal_(unet.final_conv.weight, std=0.1)
        torch.nn.init.normal_(unet.null_text_pooled, std=1.0)
    return unet


def _text_inputs(g, b=2, n=4, d=16):
    text_embeds = torch.randn(b, n, d, generator=g)
    text_mask = torch.ones(b, n, dtype=torch.bool)
    text_mask[1, 2:] = False
    text_embeds[~text_mask] = 0  # padded positions are zero (CONTRIBUTING)
    return text_embeds, text_mask
