"""02 · Forward and reverse diffusion: exercises 2.1-2.4 (the posterior of a jump, eps from v, DDIM with eta, one
DPM-Solver++(2M) step)."""

import torch

from ..samplers import ddim_step, dpmpp_2m_step, half_log_snr, posterior
from .common import _b, _call, _checker, _compare, _earlier, _Failed, _passed, _schedule_inputs


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
        (c2 * x0 + c1 * x_t, "x_t and x0 are swapped: the coefficient with sqrt(a_s) multiplies x0, the one with "
                              "sqrt(1 - beta) multiplies x_t"),
        (lambda: posterior(x_t, x0, a_s, a_t)[0], "a_t and a_s are swapped: a_t belongs to the LATER, noisier time t"),
        (c1 * x0 + (1 - beta) * (1 - A_s) / (1 - A_t) * x_t,
         "missing sqrt: x_t's coefficient has sqrt(1 - beta) = sqrt(alpha), not alpha"),
        (A_t.sqrt() * beta / (1 - A_t) * x0 + c2 * x_t, "x0's coefficient uses sqrt(a_s), not sqrt(a_t)"),
        (wc1 * x0 + wc2 * x_t, "the one-step beta_t of the notebook becomes, for a jump t -> s, the noise added "
                                "between s and t: 1 - a_t / a_s (not 1 - a_t, the noise since the clean image)"),
    ]

    def nan_hint(got):  # a_s = 1 at the last step: with a_t and a_s swapped, 1 - a_t is 0 there
        swapped = posterior(x_t, x0, a_s, a_t)[0]
        if torch.equal(torch.isfinite(got.detach()), torch.isfinite(swapped)):
            return "a_t and a_s are swapped: a_t belongs to the LATER, noisier time t"
        return None

    diff_mean = _compare(mean, mean_ref, what="mean", variants=mean_variants, nan_hint=nan_hint)
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


def _v_inputs():
    """x_t, v (4, 3, 8, 8), t (4,) and the schedule, from a real x0 and eps."""
    schedule, x0, eps = _schedule_inputs()
    t = torch.tensor([5, 17, 63, 99])
    x_t = schedule.q_sample(x0, t, eps)
    return schedule, x_t, t, schedule.predict_v(x0, t, eps)


@_checker
def check_eps_from_v(fn):
    """Exercise 2.2. fn(x_t, t, v, diffusion) -> eps, (b, c, h, w): the noise a v prediction implies."""
    diffusion, x_t, t, v = _v_inputs()
    expected = diffusion.predict_noise_from_start(x_t, t, diffusion.predict_start_from_v(x_t, t, v))
    got = _call(fn, x_t.clone(), t.clone(), v.clone(), diffusion)

    def with_table(table, shift=0):
        a = _b(table[(t + shift).clamp(0, len(table) - 1)])
        return a.sqrt() * v + (1 - a).sqrt() * x_t

    a = _b(diffusion.alphas_cumprod[t])
    variants = [
        (a.sqrt() * v - (1 - a).sqrt() * x_t, "wrong sign: x_t enters eps with a PLUS sign"),
        (-a.sqrt() * v + (1 - a).sqrt() * x_t, "wrong sign: v enters eps with a PLUS sign (v = sqrt(a) eps - ...)"),
        ((1 - a).sqrt() * v + a.sqrt() * x_t, "the two coefficients are swapped: sqrt(a_t) multiplies v, "
                                              "sqrt(1 - a_t) multiplies x_t"),
        (a * v + (1 - a) * x_t, "missing sqrt: the coefficients are sqrt(a_t) and sqrt(1 - a_t)"),
        (lambda: with_table(diffusion.alphas), "you used alphas (one step) where alphas_cumprod belongs"),
        (lambda: with_table(diffusion.alphas_cumprod, -1), "t is off by one: t is already the 0-based index"),
        (lambda: with_table(diffusion.alphas_cumprod, 1), "t is off by one: t is already the 0-based index"),
        (lambda: diffusion.predict_start_from_v(x_t, t, v), "that is x0 from v (the notebook's equation); "
                                                           "this exercise asks for the noise eps"),
    ]
    diff = _compare(got, expected, what="eps", variants=variants)
    return _passed(diff, against="minimagen (predict_noise_from_start of predict_start_from_v)")


@_checker
def check_ddim_eta_step(fn, my_posterior=None):
    """Exercise 2.3. fn(x_t, x0, a_t, a_s, noise, eta) -> x_s, one DDIM step with noise level eta.

    my_posterior: the learner's answer to 2.1, which the step calls; a failure it causes names 2.1.
    """
    x_t, x0, a_t, a_s, noise = _step_inputs()
    x_t, x0, a_t, a_s, noise = x_t[:3], x0[:3], a_t[:3], a_s[:3], noise[:3]  # not the last step (var = 0 there)
    A_t, A_s = _b(a_t), _b(a_s)
    var = posterior(x_t, x0, a_t, a_s)[1]
    eps = (x_t - A_t.sqrt() * x0) / (1 - A_t).sqrt()
    etas = (0.5, 1.0, 0.0)
    results = {eta: _call(fn, x_t.clone(), x0.clone(), a_t.clone(), a_s.clone(), noise.clone(), eta) for eta in etas}
    # Only now (the step's own NotImplementedError comes first): is the posterior it calls right?
    cause = _earlier(my_posterior, "Exercise 2.1", "check_posterior", (x_t, x0, a_t, a_s), posterior(x_t, x0, a_t, a_s))
    worst = 0.0
    for eta, got in results.items():
        expected = ddim_step(x_t, x0, a_t, a_s, noise, eta=eta)

        def step(sigma2, noise_scale=None, keep=True):
            scale = sigma2.sqrt() if noise_scale is None else noise_scale
            return A_s.sqrt() * x0 + (1 - A_s - (sigma2 if keep else 0)).clamp(min=0).sqrt() * eps + scale * noise

        variants = [
            (step(eta**2 * var, noise_scale=eta**2 * var), "missing sqrt: the fresh noise is scaled by the standard "
                                                           "deviation sigma = eta sqrt(var), not by the variance"),
            (step(eta * var), "sigma = eta * sqrt(var), so sigma^2 = eta^2 var: you used eta var"),
            (step(eta**2 * var, keep=False), "the implied noise's coefficient must shrink to sqrt(1 - a_s - sigma^2): "
                                             "the total noise at s stays 1 - a_s"),
            (step(eta**2 * var, noise_scale=-(eta**2 * var).sqrt()), "wrong sign: ADD sigma times the fresh noise"),
            (lambda: ddim_step(x_t, x0, a_t, a_s, noise, eta=0.0), "you left out the fresh noise: with eta > 0 add "
                                                                    "sigma times `noise`"),
        ]
        diff = _compare(got, expected, what=f"x_s (eta={eta:g})", variants=variants, cause=cause)
        worst = max(worst, diff)
    return _passed(worst, " for eta = 0, 0.5 and 1")


def _solver_inputs():
    """x_t, x0, x0_prev (4, 3, 8, 8), the schedule and per-image steps t_prev > t > s >= 0 (uneven: r = h_prev / h
    runs from about 0.3 to 1.8, so r and 1 / r differ everywhere)."""
    schedule, x_t, x0 = _schedule_inputs()
    g = torch.Generator().manual_seed(3)
    x0_prev = (x0 + 0.3 * torch.randn(x0.shape, generator=g)).clamp(-1, 1)
    t_prev, t, s = torch.tensor([30, 60, 95, 50]), torch.tensor([20, 40, 80, 44]), torch.tensor([5, 30, 50, 33])
    return schedule, x_t, x0.clamp(-1, 1), x0_prev, t_prev, t, s


def _solver_variants(x_t, x0, x0_prev, a_prev, a_t, a_s):
    """Known wrong 2M steps from alphas_cumprod (b,) at t_prev, t, s: (callable, hint) pairs for _compare."""
    A_t, A_s = _b(a_t), _b(a_s)
    lam_prev, lam_t, lam_s = (half_log_snr(_b(a)) for a in (a_prev, a_t, a_s))
    h, h_prev = lam_s - lam_t, lam_t - lam_prev

    def step(d_coef=None, h_exp=h, ratio=h_prev / h, newest=x0, older=x0_prev, sqrt=True, ahead=0.5):
        d = newest + ahead * (newest - older) / ratio
        x_coef = ((1 - A_s) / (1 - A_t)) if not sqrt else ((1 - A_s) / (1 - A_t)).sqrt()
        return x_coef * x_t + (A_s.sqrt() * (1 - torch.exp(-h_exp)) if d_coef is None else d_coef) * d

    def noise_from_x0():  # the DDIM form sqrt(a_s) D + sigma_s eps, with eps implied by x0 instead of D
        d = x0 + (x0 - x0_prev) / (2 * h_prev / h)
        return A_s.sqrt() * d + ((1 - A_s) / (1 - A_t)).sqrt() * (x_t - A_t.sqrt() * x0)

    return [
        (lambda: dpmpp_2m_step(x_t, x0, a_t, a_s), "that is the first-order (DDIM) step: with a previous prediction, "
                                                    "D extrapolates the line through x0_prev and x0"),
        (lambda: step(h_exp=-h, ratio=-h_prev / h), "wrong sign of h: h = lambda_s - lambda_t > 0, since lambda "
                                                    "grows as the noise falls"),
        (lambda: step(ratio=-h_prev / h), "wrong sign: the line goes on PAST x0, D = x0 + (x0 - x0_prev) / (2r), "
                                          "with h_prev = lambda_t - lambda_prev > 0, so r > 0"),
        (lambda: step(ratio=h / h_prev), "r is upside down: r = h_prev / h, the previous step's length over this "
                                         "one's"),
        (lambda: step(newest=x0_prev, older=x0), "x0 and x0_prev are swapped: the newest prediction x0 gets the "
                                                 "weight 1 + 1 / (2r)"),
        (lambda: step(ahead=1.0), "you took the line's value at the END of the jump; 2M uses it half way: "
                                  "(x0 - x0_prev) / (2r)"),
        (lambda: step(h_exp=2 * h), "lambda is HALF the log-SNR: log(sqrt(a) / sqrt(1 - a))"),
        (lambda: step(sqrt=False), "missing sqrt: x_t's coefficient is sigma_s / sigma_t = "
                                   "sqrt((1 - a_s) / (1 - a_t))"),
        (lambda: step(d_coef=A_s * (1 - torch.exp(-h))), "missing sqrt: D's coefficient is sqrt(a_s) (1 - e^(-h))"),
        (noise_from_x0, "D replaces x0 in BOTH places of the DDIM form: the implied noise must come from D too (or use "
                        "the form with e^(-h), where only x_t and D appear)"),
    ]


@_checker
def check_dpm_solver_step(fn):
    """Exercise 2.4. fn(x_t, x0, t, s, diffusion, x0_prev, t_prev) -> x_s, one DPM-Solver++(2M) step t -> s at
    integer steps; x0_prev = t_prev = None on the first step (then a DDIM step)."""
    schedule, x_t, x0, x0_prev, t_prev, t, s = _solver_inputs()
    ac = schedule.alphas_cumprod
    none_hint = (("NoneType", "on the first step x0_prev and t_prev are None: then D = x0, a DDIM step"),)
    got = _call(fn, x_t.clone(), x0.clone(), t.clone(), s.clone(), schedule, x0_prev.clone(), t_prev.clone())
    first = _call(fn, x_t.clone(), x0.clone(), t.clone(), s.clone(), schedule, None, None, hints=none_hint)

    def steps_with(table, shift=0):  # the package's step with alphas_cumprod read wrongly: (2M, first order)
        a_prev, a_t, a_s = (getattr(schedule, table)[(i + shift).clamp(0, len(ac) - 1)] for i in (t_prev, t, s))
        return dpmpp_2m_step(x_t, x0, a_t, a_s, x0_prev, a_prev), dpmpp_2m_step(x_t, x0, a_t, a_s)

    def index_variants(which):
        off_by_one = "t is off by one: t, s and t_prev are already 0-based indices into alphas_cumprod"
        return [
            (lambda: steps_with("alphas")[which], "you used alphas (one step) where alphas_cumprod belongs"),
            (lambda: steps_with("alphas_cumprod", -1)[which], off_by_one),
            (lambda: steps_with("alphas_cumprod", 1)[which], off_by_one),
        ]

    a_prev, a_t, a_s = ac[t_prev], ac[t], ac[s]
    variants = index_variants(0) + _solver_variants(x_t, x0, x0_prev, a_prev, a_t, a_s)
    diff = _compare(got, dpmpp_2m_step(x_t, x0, a_t, a_s, x0_prev, a_prev), what="x_s", variants=variants)
    diff_first = _compare(first, dpmpp_2m_step(x_t, x0, a_t, a_s), what="x_s of the first step (x0_prev None)",
                          variants=index_variants(1))
    return _passed(max(diff, diff_first), " (dpmpp_2m_step): a second-order step and a first one")
