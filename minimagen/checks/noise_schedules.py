"""01 · Noise schedules: exercises 1.1-1.3 (a shifted schedule, a respaced chain, a forward jump s -> t)."""

import torch

from .common import _b, _call, _checker, _compare, _passed, _schedule_inputs


def shifted_alphas_cumprod(alphas_cumprod: torch.Tensor, factor: float) -> torch.Tensor:
    """The schedule whose SNR is `factor` times the given one's at every step.

    SNR = a / (1 - a) (notebook 01), so SNR' = factor * SNR and a' = SNR' / (1 + SNR').
    alphas_cumprod: (T,) in (0, 1). Returns (T,) in (0, 1).
    """
    snr = factor * alphas_cumprod / (1 - alphas_cumprod)
    return snr / (1 + snr)


def respaced_betas(alphas_cumprod: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Betas of the shorter chain that visits only the steps `times` (increasing indices into 0..T-1).

    Step i of the short chain goes from times[i - 1] to times[i] (from the clean image for i = 0), so
    beta_i = 1 - a[times[i]] / a[times[i - 1]], with a = 1 before the first. Returns (len(times),).
    """
    a = alphas_cumprod[times]
    previous = torch.cat([a.new_ones(1), a[:-1]])
    return 1 - a / previous


def forward_jump(x_s, s, t, noise, alphas_cumprod):
    """x_t from x_s, s < t: x_t = sqrt(a_t / a_s) x_s + sqrt(1 - a_t / a_s) noise, per image."""
    ratio = _b(alphas_cumprod[t] / alphas_cumprod[s])
    return ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise


@_checker
def check_shifted_schedule(fn):
    """Exercise 1.1. fn(alphas_cumprod, factor) -> alphas_cumprod (T,) of the schedule with factor times the SNR."""
    schedule, _, _ = _schedule_inputs()
    a = schedule.alphas_cumprod.double()
    factor = 0.25  # a 32 px stage's schedule shifted for 64 px: (32 / 64) ** 2
    expected = shifted_alphas_cumprod(a, factor)
    got = _call(fn, a.clone(), factor)
    snr = a / (1 - a)
    variants = [
        (a * factor, "you scaled alphas_cumprod itself; the factor multiplies the SNR a / (1 - a), then turn the "
                     "new SNR back into alphas_cumprod"),
        (snr * factor, "you returned the new SNR: turn it back into alphas_cumprod, a = SNR / (1 + SNR)"),
        (1 / (1 + snr * factor), "that is 1 - alphas_cumprod (the noise variance): a = SNR / (1 + SNR)"),
        (shifted_alphas_cumprod(a, factor ** 0.5), "you multiplied the SNR by sqrt(factor): the SNR is a ratio of "
                                                    "variances, the factor multiplies it as it is"),
        (shifted_alphas_cumprod(a, 1 / factor), "the factor is upside down: with factor < 1 every step must get "
                                                 "noisier (a smaller SNR)"),
    ]
    diff = _compare(got, expected, what="shifted alphas_cumprod", variants=variants, atol=1e-9, rtol=1e-7)
    return _passed(diff, against="the reference, SNR' = factor * SNR")


@_checker
def check_respaced_betas(fn):
    """Exercise 1.2. fn(schedule, times) -> betas (len(times),) of the chain that visits only `times`."""
    schedule, _, _ = _schedule_inputs()
    times = torch.tensor([9, 29, 49, 69, 99])
    ac, alphas = schedule.alphas_cumprod, schedule.alphas
    expected = respaced_betas(ac, times)
    got = _call(fn, schedule, times.clone())

    def shape_hint(got):
        if got.ndim == 1 and got.shape[0] == len(times) - 1:
            return ("the short chain has one step per visited time: the first step starts from the clean image, "
                    "where alphas_cumprod is 1")
        return None

    variants = [
        (respaced_betas(alphas, times), "you used alphas (one step's survival) where alphas_cumprod belongs: the "
                                        "product up to each visited step"),
        (1 - alphas[times], "that is the original chain's beta at each visited step: one short step spans many "
                            "original steps, so compare alphas_cumprod at neighbouring VISITED times"),
        (respaced_betas(ac, times - 1), "t is off by one: times are already 0-based indices into alphas_cumprod"),
        (respaced_betas(ac, (times + 1).clamp(max=len(ac) - 1)),
         "t is off by one: times are already 0-based indices into alphas_cumprod"),
        (ac[times], "you returned alphas_cumprod at the visited times: return the betas of the short chain"),
        (1 - respaced_betas(ac, times), "you returned the short chain's alphas = 1 - beta: return the betas"),
        (1 - ac[times], "1 - alphas_cumprod is the noise after ALL steps so far, not one short step's beta: "
                        "divide by alphas_cumprod at the previous visited time"),
    ]
    diff = _compare(got, expected, what="respaced betas", variants=variants, shape_hint=shape_hint)
    return _passed(diff, against="the reference, beta_i = 1 - a[times[i]] / a[times[i - 1]]")


@_checker
def check_forward_jump(fn):
    """Exercise 1.3. fn(x_s, s, t, noise, schedule) -> x_t, (b, c, h, w): noise a noisy image further, s < t."""
    schedule, x_s, noise = _schedule_inputs()
    s = torch.tensor([1, 10, 30, 50])
    t = torch.tensor([5, 40, 31, 99])
    ac, alphas = schedule.alphas_cumprod, schedule.alphas
    expected = forward_jump(x_s, s, t, noise, ac)
    got = _call(fn, x_s.clone(), s.clone(), t.clone(), noise.clone(), schedule)
    ratio = ac[t] / ac[s]

    def mix(a, b):  # a * x_s + b * noise, a and b (b,)
        return _b(a) * x_s + _b(b) * noise

    def nan_hint(got):
        return ("sqrt of a negative number: is s the EARLIER step? The signal that survives from s to t is "
                "alphas_cumprod[t] / alphas_cumprod[s], which is below 1")

    variants = [
        (mix(ratio, 1 - ratio), "missing sqrt: both coefficients are standard deviations, the square roots of "
                                "the surviving signal's variance a_t / a_s and of the added noise's 1 - a_t / a_s"),
        (mix(ratio.sqrt(), 1 - ratio), "missing sqrt on the noise: its coefficient is the standard deviation "
                                       "sqrt(1 - a_t / a_s)"),
        (mix(ac[t].sqrt(), (1 - ac[t]).sqrt()), "that is the jump from the CLEAN image: x_s is already noisy, only "
                                                "the signal between s and t, a_t / a_s, is lost"),
        (mix(ratio.sqrt(), (1 - ac[t]).sqrt()), "the noise to add is 1 - a_t / a_s: x_s already holds the noise "
                                                "up to step s"),
        (lambda: forward_jump(x_s, s, t, noise, alphas),
         "you used alphas (one step) where alphas_cumprod belongs (the product over all steps)"),
        (lambda: forward_jump(x_s, s - 1, t - 1, noise, ac), "t is off by one: s and t are already 0-based indices"),
        (lambda: forward_jump(x_s, s + 1, t, noise, ac), "t is off by one: s and t are already 0-based indices"),
        (mix((1 - ratio).sqrt(), ratio.sqrt()), "the two coefficients are swapped: sqrt(a_t / a_s) multiplies x_s"),
    ]
    diff = _compare(got, expected, what="x_t", variants=variants, nan_hint=nan_hint)
    return _passed(diff, against="the reference, x_t = sqrt(a_t / a_s) x_s + sqrt(1 - a_t / a_s) noise")
