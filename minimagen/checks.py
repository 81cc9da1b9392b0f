"""Checkers for the course exercises (exercises/ and solutions/ notebooks).

Each `check_*` takes the learner's function, runs it and minimagen's reference on small seeded
inputs, prints ONE line and returns True (it matches) or False:

    ✓ check_q_sample: matches minimagen (max |diff| < 1e-6)
    ✗ check_q_sample: x_t off by up to 0.62 (worst at [3, 1, 4, 7]: got 0.25, expected 0.87) — missing sqrt ...
    ✗ Exercise 1.3 is not done yet: write x_t = sqrt(alphas_cumprod[t]) x_start + ...

On a mismatch it says what is wrong: the shape, dtype or device, or how far off the values are and
where, and, when the answer equals a known wrong variant (alphas instead of alphas_cumprod, a
missing sqrt, a reversed guidance formula, ...), which mistake that is. A function that raises
NotImplementedError (an exercise not done yet) is reported without a traceback.

Checks run on the CPU with one thread, never touch the global random state (they seed their own),
and take well under a second. Exercise numbers follow the course notebooks:

    1.1 check_cosine_alphas_cumprod   1.2 check_beta_schedule      1.3 check_q_sample
    2.1 check_posterior               2.2 check_ddpm_step          2.3 check_ddim_step
    3.1 check_dynamic_threshold       4.1 check_film               4.2 check_cross_attention
    6.1 check_guidance_formula        6.2 check_guidance           7.1 check_noise_augmentation
    9.1 check_training_step

Model code never imports this module.
"""

import copy
import functools
import math
import re

import torch
import torch.nn.functional as F

from .diffusion import GaussianDiffusion
from .layers import Attention, ResnetBlock
from .samplers import ddim_step, ddpm_step, posterior
from .schedules import MAX_BETA, beta_schedule, cosine_alphas_cumprod, linear_alphas_cumprod
from .thresholding import dynamic_threshold
from .Unet import Unet

__all__ = [
    "check_cosine_alphas_cumprod",
    "check_beta_schedule",
    "check_q_sample",
    "check_posterior",
    "check_ddpm_step",
    "check_ddim_step",
    "check_dynamic_threshold",
    "check_film",
    "check_cross_attention",
    "check_guidance_formula",
    "check_guidance",
    "check_noise_augmentation",
    "check_training_step",
]

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
             shape_hint=None, nan_hint=None) -> float:
    """Compare the learner's tensor with the reference; return max |diff| or raise _Failed with a hint.

    variants: (tensor or zero-argument callable, hint) pairs, known wrong answers tried in order when
    the values are off. shape_hint(got) / nan_hint(got) may return a hint for those failures.
    """
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


def _passed(diff: float, extra: str = "") -> str:
    return f"matches minimagen{extra} (max |diff| {_diff_text(diff)})"


def _b(values: torch.Tensor) -> torch.Tensor:
    """(b,) -> (b, 1, 1, 1)."""
    return values.view(-1, 1, 1, 1)


# 01 · Noise schedules ------------------------------------------------------------------------------


@_checker
def check_cosine_alphas_cumprod(fn):
    """Exercise 1.1. fn(tau) -> alphas_cumprod of the cosine schedule at continuous times tau (float64)."""
    tau = torch.linspace(0, 1, 21, dtype=torch.float64).view(3, 7)
    expected = cosine_alphas_cumprod(tau)
    got = _call(fn, tau.clone())
    s = 0.008
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    variants = [
        (f, "alphas_cumprod(0) must be exactly 1: divide f(tau) by f(0)"),
        (lambda: (torch.cos((tau + s) / (1 + s) * math.pi / 2) / math.sqrt(f0)),
         "missing the square: f(tau) = cos(...) ** 2"),
        (torch.cos(tau * math.pi / 2) ** 2, "you left out the offset s: use (tau + s) / (1 + s)"),
        (lambda: torch.cos((tau + s) * math.pi / 2) ** 2 / math.cos(s * math.pi / 2) ** 2,
         "divide (tau + s) by (1 + s), so that the curve reaches 0 exactly at tau = 1"),
        (torch.cos((tau + s) / (1 + s)) ** 2 / math.cos(s / (1 + s)) ** 2, "the angle is ((tau + s) / (1 + s)) * pi / 2"),
    ]
    diff = _compare(got, expected, what="alphas_cumprod", variants=variants, atol=1e-6, rtol=1e-5)
    return _passed(diff)


@_checker
def check_beta_schedule(fn):
    """Exercise 1.2. fn(curve, timesteps) -> betas (timesteps,) float64, read off the curve alphas_cumprod(tau)."""
    worst = 0.0
    for name, curve, steps in (("cosine", cosine_alphas_cumprod, 10), ("linear", linear_alphas_cumprod, 25),
                               ("cosine", cosine_alphas_cumprod, 1)):
        expected = beta_schedule(name, steps)
        got = _call(fn, curve, steps)
        taus = torch.arange(steps + 1, dtype=torch.float64) / steps
        ac = curve(taus)

        def shape_hint(got, steps=steps):
            if got.ndim == 1 and got.shape[0] == steps - 1:
                return ("evaluate the curve at the T + 1 times tau = 0, 1/T, ..., 1 "
                        "(torch.arange(T + 1) / T): T + 1 values give T ratios")
            if got.ndim == 1 and got.shape[0] == steps + 1:
                return "beta_t compares neighbouring values of alphas_cumprod, so T + 1 values give T betas"
            return None

        variants = [
            (ac[1:], "you returned alphas_cumprod itself: beta_t = 1 - alphas_cumprod_t / alphas_cumprod_{t-1}"),
            (ac[1:] / ac[:-1], "you returned alphas = 1 - beta: return betas = 1 - alphas_cumprod_t / alphas_cumprod_{t-1}"),
            ((1 - ac[1:]).clamp(1e-8, MAX_BETA),
             "1 - alphas_cumprod_t is the variance after ALL t steps, not one step's beta: divide by alphas_cumprod_{t-1}"),
            (1 - ac[1:], "1 - alphas_cumprod_t is the variance after ALL t steps, not one step's beta: "
                         "divide by alphas_cumprod_{t-1}"),
            (1 - ac[1:] / ac[:-1], f"forgot to clamp: the last cosine beta is 1, which makes 1/sqrt(alpha) infinite; "
                                   f"clamp betas to [1e-8, MAX_BETA = {MAX_BETA}]"),
        ]
        diff = _compare(got, expected, what=f"betas ({name} curve, timesteps={steps})", variants=variants,
                        atol=1e-6, rtol=1e-5, shape_hint=shape_hint)
        worst = max(worst, diff)
    return _passed(worst, " for the cosine and linear curves")


def _schedule_inputs(timesteps: int = 100):
    g = torch.Generator().manual_seed(1)
    schedule = GaussianDiffusion("cosine", timesteps)
    x = torch.randn(4, 3, 8, 8, generator=g)
    noise = torch.randn(4, 3, 8, 8, generator=g)
    return schedule, x, noise


@_checker
def check_q_sample(fn):
    """Exercise 1.3. fn(x_start, t, noise, schedule) -> x_t, (b, c, h, w)."""
    schedule, x_start, noise = _schedule_inputs()
    t = torch.tensor([0, 10, 57, 99])
    expected = schedule.q_sample(x_start, t, noise)
    got = _call(fn, x_start.clone(), t.clone(), noise.clone(), schedule)
    ac, alphas = schedule.alphas_cumprod, schedule.alphas

    def mix(a, b):  # a * x_start + b * noise, a and b (b,)
        return _b(a) * x_start + _b(b) * noise

    a = ac[t]
    variants = [
        (mix(a, 1 - a), "missing sqrt: the coefficients are sqrt(alphas_cumprod_t) and sqrt(1 - alphas_cumprod_t) "
                        "(standard deviations, not variances)"),
        (mix(a.sqrt(), 1 - a), "missing sqrt on the noise: its coefficient is the standard deviation "
                               "sqrt(1 - alphas_cumprod_t), not the variance"),
        (mix(a, (1 - a).sqrt()), "missing sqrt on the image: its coefficient is sqrt(alphas_cumprod_t)"),
        (mix(alphas[t].sqrt(), (1 - alphas[t]).sqrt()),
         "you used alphas (one step) instead of alphas_cumprod (the product over all steps up to t)"),
        (mix(ac[t - 1].sqrt(), (1 - ac[t - 1]).sqrt()),
         "t is off by one: t is already the 0-based index, use alphas_cumprod[t]"),
        (mix((1 - a).sqrt(), a.sqrt()), "the two coefficients are swapped: sqrt(alphas_cumprod_t) multiplies x_start"),
        (mix(a.sqrt(), -(1 - a).sqrt()), "the noise is added, not subtracted"),
    ]
    diff = _compare(got, expected, what="x_t", variants=variants)
    return _passed(diff)


# 02 · Forward and reverse diffusion ----------------------------------------------------------------


def _step_inputs():
    """x_t, x0 (4, 3, 8, 8) and a_t, a_s (4,) for jumps t -> s, one of them the last step (s = -1, a_s = 1)."""
    schedule, x_t, x0 = _schedule_inputs()
    ac = schedule.alphas_cumprod
    t = torch.tensor([5, 20, 60, 99])
    s = torch.tensor([4, 10, 59, -1])
    a_t = ac[t]
    a_s = torch.where(s >= 0, ac[s.clamp(min=0)], torch.ones(()))
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x_t.shape, generator=g)
    return x_t, x0.clamp(-1, 1), a_t, a_s, noise


def _posterior_parts(x_t, x0, a_t, a_s, beta=None):
    a_t, a_s = _b(a_t), _b(a_s)
    beta = 1 - a_t / a_s if beta is None else _b(beta)
    c1 = a_s.sqrt() * beta / (1 - a_t)
    c2 = (1 - beta).sqrt() * (1 - a_s) / (1 - a_t)
    return beta, c1, c2, beta * (1 - a_s) / (1 - a_t)


@_checker
def check_posterior(fn):
    """Exercise 2.1. fn(x_t, x0, a_t, a_s) -> (mean like x_t, var broadcastable to x_t) of q(x_s | x_t, x0)."""
    x_t, x0, a_t, a_s, _ = _step_inputs()
    mean_ref, var_ref = posterior(x_t, x0, a_t, a_s)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Failed(f"return a pair (mean, var), got {type(got).__name__}"
                      + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    mean, var = got
    beta, c1, c2, var_true = _posterior_parts(x_t, x0, a_t, a_s)
    A_t, A_s = _b(a_t), _b(a_s)
    wrong_beta = 1 - a_t
    wb, wc1, wc2, wvar = _posterior_parts(x_t, x0, a_t, a_s, beta=wrong_beta)
    mean_variants = [
        (c2 * x0 + c1 * x_t, "the two coefficients are swapped: posterior_mean_coef1 (with sqrt(a_s)) multiplies x0"),
        (c1 * x0 + (1 - beta) * (1 - A_s) / (1 - A_t) * x_t,
         "missing sqrt: x_t's coefficient has sqrt(1 - beta) = sqrt(alpha), not alpha"),
        (A_t.sqrt() * beta / (1 - A_t) * x0 + c2 * x_t, "x0's coefficient uses sqrt(a_s), not sqrt(a_t)"),
        (wc1 * x0 + wc2 * x_t, "beta of the jump t -> s is 1 - a_t / a_s, not 1 - a_t"),
    ]
    diff_mean = _compare(mean, mean_ref, what="mean", variants=mean_variants)
    if not torch.is_tensor(var):
        raise _Failed(f"var should be a torch.Tensor, got {type(var).__name__}")
    try:
        broadcast = torch.broadcast_shapes(var.shape, x_t.shape) == x_t.shape
    except RuntimeError:
        broadcast = False
    if not broadcast:
        raise _Failed(f"var must broadcast against x_t {tuple(x_t.shape)}: return it as (b, 1, 1, 1) "
                      f"(or like x_t), got {tuple(var.shape)}")
    var_variants = [
        (beta.expand_as(x_t), "that is beta, an upper bound; the posterior variance is beta (1 - a_s) / (1 - a_t)"),
        (var_true.sqrt().expand_as(x_t), "you returned the standard deviation; return the variance (no sqrt)"),
        (((1 - A_s) / (1 - A_t)).expand_as(x_t), "missing the factor beta: var = beta (1 - a_s) / (1 - a_t)"),
        (wvar.expand_as(x_t), "beta of the jump t -> s is 1 - a_t / a_s, not 1 - a_t"),
    ]
    diff_var = _compare(var.expand_as(x_t), var_ref.expand_as(x_t), what="var",
                        variants=var_variants)
    return _passed(max(diff_mean, diff_var), ": mean and var")


@_checker
def check_ddpm_step(fn):
    """Exercise 2.2. fn(x_t, x0, a_t, a_s, noise) -> x_s, one ancestral step (a sample of the posterior)."""
    x_t, x0, a_t, a_s, noise = _step_inputs()
    expected = ddpm_step(x_t, x0, a_t, a_s, noise)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone(), noise.clone())
    mean, var = posterior(x_t, x0, a_t, a_s)
    variants = [
        (mean + var * noise, "scale the noise by the standard deviation sqrt(var), not by var"),
        (mean, "you returned the mean: add sqrt(var) * noise to sample the posterior"),
        (mean + noise, "the noise must be scaled by sqrt(var)"),
        (mean + _b(1 - a_t / a_s).sqrt() * noise, "the noise scale is sqrt of the posterior variance, not sqrt(beta)"),
    ]
    diff = _compare(got, expected, what="x_s", variants=variants)
    return _passed(diff)


@_checker
def check_ddim_step(fn):
    """Exercise 2.3. fn(x_t, x0, a_t, a_s) -> x_s, one deterministic DDIM step (eta = 0)."""
    x_t, x0, a_t, a_s, _ = _step_inputs()
    expected = ddim_step(x_t, x0, a_t, a_s)
    got = _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone())
    A_t, A_s = _b(a_t), _b(a_s)
    eps = (x_t - A_t.sqrt() * x0) / (1 - A_t).sqrt()
    variants = [
        (A_s.sqrt() * x0, "you dropped the noise direction: add sqrt(1 - a_s) * eps, with eps the noise x_t implies"),
        (x_t, "you returned x_t unchanged: re-noise x0 to the EARLIER level s, with a_s (not a_t)"),
        (A_s.sqrt() * x0 + (1 - A_s).sqrt() * (x_t - A_t.sqrt() * x0) / (1 - A_t),
         "missing sqrt: eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)"),
        (A_s.sqrt() * x0 + (1 - A_s) * eps, "missing sqrt: the noise coefficient is sqrt(1 - a_s)"),
        (A_s * x0 + (1 - A_s).sqrt() * eps, "missing sqrt: x0's coefficient is sqrt(a_s)"),
        (lambda: posterior(x_t, x0, a_t, a_s)[0],
         "that is the DDPM posterior mean; DDIM keeps the implied noise eps and re-scales it: "
         "x_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps"),
    ]
    diff = _compare(got, expected, what="x_s", variants=variants)
    return _passed(diff)


# 03 · Dynamic thresholding -------------------------------------------------------------------------


@_checker
def check_dynamic_threshold(fn):
    """Exercise 3.1. fn(x0, percentile) -> x0 thresholded, (b, c, h, w) in [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([0.25, 1.5, 3.0, 6.0])  # image 0 already lies inside [-1, 1]
    x0 = torch.randn(4, 3, 8, 8, generator=g) * _b(scales)
    p = 0.9
    expected = dynamic_threshold(x0, p)
    got = _call(fn, x0.clone(), p)

    def quantile(values, q=p):
        return torch.quantile(values.flatten(1), q, dim=1)

    s = _b(quantile(x0.abs()).clamp(min=1))
    s_signed = _b(quantile(x0).clamp(min=1))
    s_raw = _b(quantile(x0.abs()))
    s_batch = torch.quantile(x0.abs().flatten(), p).clamp(min=1)
    variants = [
        (torch.maximum(torch.minimum(x0, s), -s), "forgot to divide by s: clamping to [-s, s] alone leaves values "
                                                  "outside [-1, 1]"),
        (x0 / s, "forgot to clamp to [-s, s] before dividing by s"),
        (torch.maximum(torch.minimum(x0, s_signed), -s_signed) / s_signed,
         "s is the percentile of |x0| (torch.quantile of x0.abs()), not of x0"),
        (torch.maximum(torch.minimum(x0, s_raw), -s_raw) / s_raw,
         "s must be at least 1 (s = max(1, quantile)): otherwise images already inside [-1, 1] are stretched "
         "(look at image 0)"),
        (torch.maximum(torch.minimum(x0, s_batch), -s_batch) / s_batch,
         "s is computed per image (quantile over each image's pixels, dim=1 after flatten(1)), not over the batch"),
        (x0.clamp(-1, 1), "that is static clipping: dynamic thresholding clamps to [-s, s] and then divides by s"),
    ]
    for wrong_p in (0.95, 0.995, 0.99):
        sw = _b(quantile(x0.abs(), wrong_p).clamp(min=1))
        variants.append((torch.maximum(torch.minimum(x0, sw), -sw) / sw,
                         f"you used percentile {wrong_p}: use the `percentile` argument"))
    diff = _compare(got, expected, what="thresholded x0", variants=variants)
    return _passed(diff)


# 04 · ResNet and attention blocks ------------------------------------------------------------------


def film_reference(h: torch.Tensor, time_cond: torch.Tensor, film) -> torch.Tensor:
    """FiLM exactly as minimagen.layers.ResnetBlock.forward applies it (tests check it equals the block)."""
    scale, shift = film(time_cond)[:, :, None, None].chunk(2, dim=1)
    return h * (scale + 1) + shift


@_checker
def check_film(fn):
    """Exercise 4.1. fn(h, time_cond, film) -> h scaled and shifted per channel, (b, c, H, W)."""
    block = ResnetBlock(8, 8, time_cond_dim=16)
    film = block.film
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 8, 4, 4, generator=g)
    cond = torch.randn(2, 16, generator=g)
    with torch.no_grad():
        expected = film_reference(h, cond, film)
        scale, shift = film(cond)[:, :, None, None].chunk(2, dim=1)
        got = _call(fn, h.clone(), cond.clone(), film)
        variants = [
            (h * scale + shift, "forgot the + 1: h * (scale + 1) + shift, so that a zero scale leaves h unchanged"),
            (h * (shift + 1) + scale, "scale and shift are swapped: film(cond).chunk(2, dim=1) gives (scale, shift)"),
            ((h + shift) * (scale + 1), "shift after scaling: h * (scale + 1) + shift"),
            (lambda: film_reference(h, F.silu(cond), film), "film already starts with SiLU: don't apply it again"),
            (h * (scale + 1), "forgot to add the shift"),
            (h + shift, "forgot to multiply by (scale + 1)"),
        ]
        diff = _compare(got, expected, what="FiLM output", variants=variants)
    return _passed(diff)


def attention_variant(attn: Attention, x, context, mask, *, use_mask=True, use_null=True, use_scale=True,
                      use_norm=True, invert_mask=False, empty_rows_zero=False):
    """Cross-attention written out with softmax, optionally with a known mistake (for the hints)."""
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    if use_norm:
        x, context = attn.norm(x), attn.norm_context(context)
    q = attn.to_q(x).view(b, n, h, d).transpose(1, 2)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    k, v = (t.view(b, -1, h, d).transpose(1, 2) for t in (k, v))
    keep = mask.bool()
    if invert_mask:
        keep = ~keep
    if use_null:
        null_k, null_v = (t.expand(b, h, 1, d) for t in attn.null_kv)
        k, v = torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2)
        keep = torch.cat([keep.new_ones(b, 1), keep], dim=1)
    scores = q @ k.transpose(-1, -2) * (d**-0.5 if use_scale else 1.0)
    if use_mask:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = scores.softmax(dim=-1) @ v
    if empty_rows_zero:  # what SDPA returns for a row whose keys are all masked (recent PyTorch)
        out = torch.where(keep.any(dim=1)[:, None, None, None], out, torch.zeros_like(out))
    return attn.to_out(out.transpose(1, 2).reshape(b, n, h * d))


@_checker
def check_cross_attention(fn):
    """Exercise 4.2. fn(x, context, context_mask, attn) -> (b, n, dim), masked cross-attention with attn's weights."""
    attn = Attention(12, heads=2, dim_head=8, context_dim=10)
    with torch.no_grad():
        attn.null_kv.normal_(0, 1)  # big enough to matter
        for norm in (attn.norm, attn.norm_context):
            norm.weight.add_(0.2 * torch.randn_like(norm.weight))
            norm.bias.add_(0.2 * torch.randn_like(norm.bias))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 12, generator=g)
    context = torch.randn(3, 4, 10, generator=g)  # padded tokens are NOT zero here: the mask alone must hide them
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [False, False, False, False]])
    with torch.no_grad():
        expected = attn(x, context, mask)
        got = _call(fn, x.clone(), context.clone(), mask.clone(), attn)

        def nan_hint(got):
            rows = sorted({int(i) for i in torch.nonzero(~torch.isfinite(got.detach()))[:, 0]})
            if rows == [2]:
                return ("row 2 has no real tokens (a dropped caption): prepend the learned null key/value "
                        "attn.null_kv, which is never masked, so every row has something to attend to")
            return None

        def variant(**kwargs):
            return lambda: attention_variant(attn, x, context, mask, **kwargs)

        variants = [
            (variant(use_mask=False), "padded tokens (mask False) changed your output: mask them out — scores of "
                                      "masked keys to -inf before the softmax, or attn_mask= in "
                                      "F.scaled_dot_product_attention (keep the null key)"),
            (variant(use_mask=False, use_null=False), "padded tokens (mask False) changed your output, and the null "
                                                      "key/value attn.null_kv is missing"),
            (variant(use_null=False, empty_rows_zero=True),
             "row 2 has no real tokens (a dropped caption) and came out as zeros: prepend the learned null key/value "
             "attn.null_kv, which is never masked, so every row has something to attend to"),
            (variant(invert_mask=True), "your mask is inverted: True marks a REAL token, keep those"),
            (variant(use_scale=False), "scale the scores q·k by 1 / sqrt(dim_head) before the softmax"),
            (variant(use_norm=False), "normalise first: x = attn.norm(x), context = attn.norm_context(context)"),
        ]
        diff = _compare(got, expected, what="attention output", variants=variants, nan_hint=nan_hint,
                        shape_hint=lambda got: ("project back with attn.to_out: (b, n, heads * dim_head) -> (b, n, dim)"
                                                if got.shape[-1] == attn.heads * attn.dim_head else None))
    return _passed(diff)


# 06 · Text conditioning and guidance ---------------------------------------------------------------


class _TwoHalves:
    """Stands in for a U-Net: returns the given (cond, uncond) halves, so that minimagen's own
    Unet.forward_with_cond_scale combines them and serves as the reference formula."""

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def forward(self, x, time, **kwargs):
        return torch.cat([self.cond, self.uncond])


@_checker
def check_guidance_formula(fn):
    """Exercise 6.1. fn(cond, uncond, cond_scale) -> the guided prediction, like cond."""
    g = torch.Generator().manual_seed(6)
    cond = torch.randn(2, 3, 4, 4, generator=g)
    uncond = torch.randn(2, 3, 4, 4, generator=g)
    s = 3.0
    stub = _TwoHalves(cond, uncond)
    expected = Unet.forward_with_cond_scale(stub, cond, torch.ones(2), cond_scale=s, text_embeds=torch.ones(2, 1, 1))
    got = _call(fn, cond.clone(), uncond.clone(), s)
    diff = _compare(got, expected, what="guided prediction", variants=_guidance_variants(cond, uncond, s))
    return _passed(diff)


def _guidance_variants(cond, uncond, s):
    return [
        (cond + s * (uncond - cond), "the formula is reversed: uncond + cond_scale * (cond - uncond) steers AWAY from "
                                     "the unconditional prediction, towards the caption"),
        (cond + s * (cond - uncond), "you wrote cond + s (cond - uncond), the paper's weight w = s - 1; minimagen's "
                                     "cond_scale is uncond + s (cond - uncond), so cond_scale = 1 means no guidance"),
        (cond, "your output is the conditional prediction alone: the unconditional half must drop the text"),
        (uncond, "your output is the unconditional prediction alone"),
        (s * (cond - uncond), "forgot to add uncond: uncond + cond_scale * (cond - uncond)"),
        (uncond + s * cond, "the guidance direction is (cond - uncond)"),
    ]


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


@_checker
def check_guidance(fn):
    """Exercise 6.2. fn(unet, x, time, text_embeds, text_mask, cond_scale) -> guided prediction from ONE batched pass."""
    unet = _tiny_unet().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g)
    time = torch.tensor([0.3, 0.8])
    text_embeds, text_mask = _text_inputs(g)
    s = 3.0
    with torch.no_grad():
        expected = unet.forward_with_cond_scale(x, time, cond_scale=s, text_embeds=text_embeds, text_mask=text_mask)
        cond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask)
        uncond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask, text_keep_mask=torch.zeros(2, dtype=torch.bool))

    batches = []
    forward = unet.forward

    def counting_forward(x, *args, **kwargs):
        batches.append(int(x.shape[0]))
        return forward(x, *args, **kwargs)

    def answer_key(*args, **kwargs):
        raise RuntimeError("unet.forward_with_cond_scale is the answer key: write the guided forward pass yourself")

    unet.forward = counting_forward  # nn.Module.__call__ looks up self.forward: every pass is counted
    unet.forward_with_cond_scale = answer_key
    with torch.no_grad():
        got = _call(fn, unet, x.clone(), time.clone(), text_embeds.clone(), text_mask.clone(), s)
    variants = _guidance_variants(cond, uncond, s)
    variants[2] = (cond, "your output is the conditional prediction alone: for the unconditional half drop the text "
                         "with text_keep_mask False (second half of the batch)")
    diff = _compare(got, expected, what="guided prediction", variants=variants)
    if batches != [2 * x.shape[0]]:
        raise _Failed(f"the values are right, but you ran the U-Net {len(batches)} time(s) with batch size(s) "
                      f"{batches}: run cond and uncond together in ONE pass of batch 2b (torch.cat([x, x]), "
                      f"text_keep_mask = [True] * b + [False] * b), then .chunk(2)")
    return _passed(diff, " in one batched U-Net pass")


# 07 · Super-resolution and noise conditioning augmentation -----------------------------------------


@_checker
def check_noise_augmentation(fn):
    """Exercise 7.1. fn(images, low_size, high_size, noise_level, noise, schedule) -> (b, c, high, high)."""
    from .Imagen import resize_image_to

    g = torch.Generator().manual_seed(8)
    images = torch.rand(4, 3, 16, 16, generator=g)  # in [0, 1], as they enter Imagen
    noise = torch.randn(4, 3, 16, 16, generator=g)
    levels = torch.tensor([0.0, 0.1, 0.3, 0.7])
    schedule = GaussianDiffusion("linear", 1000)  # Imagen's lowres_noise_schedule
    low_size, high_size = 8, 16

    def noised(upsampled, a_levels=None, sqrt=True):
        a = schedule.continuous_alphas_cumprod(levels) if a_levels is None else a_levels
        a = _b(a)
        return (a.sqrt() * upsampled + (1 - a).sqrt() * noise) if sqrt else (a * upsampled + (1 - a) * noise)

    normalised = images * 2 - 1
    upsampled = resize_image_to(resize_image_to(normalised, low_size), high_size)
    expected = schedule.q_sample_continuous(upsampled, levels, noise)
    got = _call(fn, images.clone(), low_size, high_size, levels.clone(), noise.clone(), schedule)

    up01 = resize_image_to(resize_image_to(images, low_size), high_size)
    plain = F.interpolate(F.interpolate(normalised, size=low_size, mode="bilinear", align_corners=False),
                          size=high_size, mode="bilinear", align_corners=False)
    variants = [
        (noised(up01) * 2 - 1, "normalise to [-1, 1] BEFORE adding noise: noising the [0, 1] image and then "
                               "normalising doubles the noise and shifts the image"),
        (noised(up01), "normalise the images to [-1, 1] first (images * 2 - 1)"),
        (noised(normalised), "you skipped the downsizing: the super-resolution stage sees the previous stage's "
                             "low_size image, upsampled back to high_size"),
        (noised(plain), "downsize with resize_image_to (bilinear, antialiased); plain interpolation aliases"),
        (noised(upsampled, 1 - levels), "the level is a time on the schedule: a = schedule.continuous_alphas_cumprod("
                                        "noise_level), not 1 - noise_level"),
        (noised(upsampled, sqrt=False), "missing sqrt: sqrt(a) * image + sqrt(1 - a) * noise"),
        (noised(upsampled, torch.ones(4)), "you added no noise: a = schedule.continuous_alphas_cumprod(noise_level)"),
        (upsampled + _b(levels) * noise, "noise the image along the schedule: sqrt(a) * image + sqrt(1 - a) * noise, "
                                         "a = schedule.continuous_alphas_cumprod(noise_level)"),
    ]
    if torch.is_tensor(got) and got.shape == expected.shape and got.dtype == expected.dtype:
        if not _close(got[0], upsampled[0], 1e-5, 1e-4) and _close(got[1:], expected[1:], 1e-5, 1e-4):
            raise _Failed("level 0 must give the clean upsampled image back (image 0 has noise_level 0)")
    diff = _compare(got, expected, what="augmented low-res image", variants=variants)
    return _passed(diff)


# 09 · Training on data -----------------------------------------------------------------------------


def _training_step_reference(unet, diffusion, optimizer, images, text_embeds, text_mask, generator, *,
                             target="eps", time="tau", order="t_first", loss="l2", update=True):
    """One training step the minimagen way (Imagen.forward), or with one known mistake. Returns the loss."""
    b = images.shape[0]
    if order == "t_first":
        t = diffusion.sample_random_times(b, generator=generator)
        noise = torch.randn(images.shape, generator=generator)
    else:
        noise = torch.randn(images.shape, generator=generator)
        t = diffusion.sample_random_times(b, generator=generator)
    x_t = diffusion.q_sample(images, t, noise)
    times = {"tau": diffusion.time_to_tau(t), "int": t.float(), "t/T": t.float() / diffusion.timesteps}[time]
    prediction = unet(x_t, times, text_embeds=text_embeds, text_mask=text_mask)
    value = diffusion.loss(prediction, images if target == "x0" else noise, t, loss_type=loss)
    if update:
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return value.detach()


@_checker
def check_training_step(fn):
    """Exercise 9.1. fn(unet, diffusion, optimizer, images, text_embeds, text_mask, generator) -> the loss."""
    master = _tiny_unet().train()
    diffusion = GaussianDiffusion("cosine", 50)
    g = torch.Generator().manual_seed(9)
    images = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    text_embeds, text_mask = _text_inputs(g)
    stale = {name: torch.randn(p.shape, generator=g) for name, p in master.named_parameters()}
    lr = 0.1

    def setup():
        unet = copy.deepcopy(master)
        for name, p in unet.named_parameters():
            p.grad = stale[name].clone()  # left over from a previous step: must be cleared
        return unet, torch.optim.SGD(unet.parameters(), lr=lr)

    ref_unet, ref_opt = setup()
    ref_loss = _training_step_reference(ref_unet, diffusion, ref_opt, images, text_embeds, text_mask,
                                        torch.Generator().manual_seed(10))
    unet, optimizer = setup()
    got = _call(fn, unet, diffusion, optimizer, images.clone(), text_embeds.clone(), text_mask.clone(),
                torch.Generator().manual_seed(10))
    if got is None:
        raise _Failed("your function returned None: return the loss (loss.item() or loss.detach())")
    try:
        got_loss = torch.as_tensor(got, dtype=torch.float64).detach()
    except Exception:  # noqa: BLE001
        raise _Failed(f"return the loss as a float or a 0-dim tensor, got {type(got).__name__}") from None
    if got_loss.numel() != 1:
        raise _Failed(f"return the loss as a single number (a scalar), got shape {tuple(got_loss.shape)}")

    def variant_loss(**kwargs):
        def run():
            with torch.no_grad():
                return _training_step_reference(copy.deepcopy(master), diffusion, None, images, text_embeds,
                                                text_mask, torch.Generator().manual_seed(10), update=False, **kwargs)
        return run

    loss_variants = [
        (variant_loss(target="x0"), "the loss compares the prediction with the NOISE eps (objective 'eps'), "
                                    "not with the clean images x0"),
        (variant_loss(time="int"), "condition the U-Net on the continuous time diffusion.time_to_tau(t) = (t + 1) / T, "
                                   "not on the integer t"),
        (variant_loss(time="t/T"), "t is off by one: the U-Net's time is (t + 1) / T (diffusion.time_to_tau(t))"),
        (variant_loss(order="noise_first"), "draw t first, then the noise, both from `generator` (the order matters "
                                            "for reproducibility)"),
        (variant_loss(loss="l1"), "use the mean squared error (l2): F.mse_loss(prediction, noise)"),
    ]
    diff_loss = _compare(got_loss.reshape(()), ref_loss.double(), what="loss", variants=loss_variants)

    params, ref_params = dict(unet.named_parameters()), dict(ref_unet.named_parameters())
    unchanged = all(torch.equal(params[n].detach(), p.detach()) for n, p in master.named_parameters())
    if unchanged:
        raise _Failed("the loss is right but the parameters did not change: call optimizer.zero_grad(), "
                      "loss.backward() and optimizer.step(), in that order")
    # Without zero_grad, SGD also follows the stale gradients: the reference update minus lr * stale.
    forgot_zero = all(_close(params[n], ref_params[n].detach() - lr * stale[n], 1e-5, 1e-4) for n in stale)
    if forgot_zero:
        raise _Failed("the parameters moved by the old gradients too: call optimizer.zero_grad() before "
                      "loss.backward()")
    worst_name, worst = None, 0.0
    for name, p in ref_params.items():
        d = float((params[name].detach().double() - p.detach().double()).abs().max())
        if d > worst:
            worst_name, worst = name, d
    if worst > 1e-5:
        raise _Failed(f"the loss is right but the updated parameters differ by up to {worst:.3g} (in {worst_name}): "
                      "one step is zero_grad, backward, step with the optimizer you were given")
    return _passed(max(diff_loss, worst), ": same loss and same updated parameters")
