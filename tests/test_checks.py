"""The exercise checkers (minimagen.checks): a right answer passes, and every wrong answer fails with
its own hint, so that no check can pass everything. Each right answer is written the way a learner
would write it (the same code as in solutions/); each wrong one is a right one with ONE mistake.

The classes of mistakes the course promises to name (exercises/README.md) each have a test below:
a missing square root, a wrong sign, alphas where alphas_cumprod belongs, swapped arguments, heads
split the wrong way, a forgotten text mask (in every exercise that takes one), the mask not extended
for the null token, t off by one, and a failure that really comes from an earlier exercise."""
import math
import time

import pytest
import torch
import torch.nn.functional as F

from minimagen import checks
from minimagen.thresholding import dynamic_threshold


def run_check(check, *fns, capsys):
    """Run a check; return (its boolean result, the single line it printed)."""
    result = check(*fns)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"a check prints exactly one line, got {out!r}"
    assert isinstance(result, bool)
    return result, lines[0]


def assert_passes(check, *fns, capsys):
    ok, line = run_check(check, *fns, capsys=capsys)
    assert ok, line
    assert line.startswith(f"✓ {check.__name__}: matches "), line
    assert "max |diff| < 1e-" in line, line


def assert_fails(check, *fns, capsys, expected=()):
    ok, line = run_check(check, *fns, capsys=capsys)
    assert not ok, line
    assert line.startswith("✗ "), line
    for text in expected:
        assert text in line, f"expected {text!r} in: {line}"
    return line


# Right answers, as in the solutions; keyword arguments put in ONE known mistake ----------------------


def shifted(alphas_cumprod, factor, *, scale_snr=True):
    if not scale_snr:
        return alphas_cumprod * factor
    snr = factor * alphas_cumprod / (1 - alphas_cumprod)
    return snr / (1 + snr)


def respaced(schedule, times, *, table="alphas_cumprod", shift=0):
    kept = getattr(schedule, table)[times + shift]
    before = torch.cat([torch.ones(1), kept[:-1]])
    return 1 - kept / before


def jump(x_s, s, t, noise, schedule, *, table="alphas_cumprod", sqrt=True, shift=0, swap_st=False):
    values = getattr(schedule, table)
    if swap_st:
        s, t = t, s
    kept = (values[t + shift] / values[s + shift])[:, None, None, None]
    if not sqrt:
        return kept * x_s + (1 - kept) * noise
    return kept.sqrt() * x_s + (1 - kept).sqrt() * noise


def post(x_t, x0, a_t, a_s, *, swap_x=False, beta_from_clean=False):
    if swap_x:
        x_t, x0 = x0, x_t
    a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
    beta = 1 - a_t if beta_from_clean else 1 - a_t / a_s
    mean = (a_s.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_s) * x_t) / (1 - a_t)
    return mean, beta * (1 - a_s) / (1 - a_t)


def eps_from_v(x_t, t, v, diffusion, *, table="alphas_cumprod", sign=1.0, sqrt=True, shift=0):
    a_t = getattr(diffusion, table)[t + shift][:, None, None, None]
    if not sqrt:
        return a_t * v + sign * (1 - a_t) * x_t
    return a_t.sqrt() * v + sign * (1 - a_t).sqrt() * x_t


def ddim_eta(x_t, x0, a_t, a_s, noise, eta, *, posterior_fn=post, sqrt=True, sign=1.0):
    sigma2 = eta**2 * posterior_fn(x_t, x0, a_t, a_s)[1]
    a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
    implied = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    fresh = sigma2.sqrt() if sqrt else sigma2
    return a_s.sqrt() * x0 + (1 - a_s - sigma2).clamp(min=0).sqrt() * implied + sign * fresh * noise


def dpm_step(x_t, x0, t, s, diffusion, x0_prev=None, t_prev=None, *, table="alphas_cumprod", shift=0, sign=1.0,
             r_inverted=False, sqrt=True, first_order=False, log_snr_factor=0.5, two=2, d_sqrt=True):
    def at(i):
        return getattr(diffusion, table)[i + shift].view(-1, 1, 1, 1)

    def lam(i):
        return log_snr_factor * (at(i) / (1 - at(i))).log()

    h = sign * (lam(s) - lam(t))
    D = x0
    if x0_prev is not None and not first_order:
        r = (lam(t) - lam(t_prev)) / h
        r = 1 / r if r_inverted else r
        D = (1 + 1 / (two * r)) * x0 - x0_prev / (two * r)
    ratio = (1 - at(s)) / (1 - at(t))
    return (ratio.sqrt() if sqrt else ratio) * x_t + (at(s).sqrt() if d_sqrt else at(s)) * (1 - torch.exp(-h)) * D


def thresholded_eps(x_t, eps, t, diffusion, percentile, *, table="alphas_cumprod", sqrt=True, sign=1.0, shift=0):
    a_t = getattr(diffusion, table)[(t + shift).clamp(0, diffusion.timesteps - 1)][:, None, None, None]
    r_a, r_1a = (a_t.sqrt(), (1 - a_t).sqrt()) if sqrt else (a_t, 1 - a_t)
    x0 = dynamic_threshold((x_t - sign * r_1a * eps) / r_a, percentile)
    return (x_t - sign * r_a * x0) / r_1a


def text_kv(context, context_mask, attn, *, split="heads", extend="front", mask=True):
    b, m, _ = context.shape
    h, d = attn.heads, attn.dim_head
    k, v = attn.to_kv(attn.norm_context(context)).chunk(2, dim=-1)
    if split == "heads":
        k, v = (part.reshape(b, m, h, d).permute(0, 2, 1, 3) for part in (k, v))
    else:  # the columns read as (dim_head, heads)
        k, v = (part.reshape(b, m, d, h).permute(0, 3, 1, 2) for part in (k, v))
    k = torch.cat([attn.null_kv[0].expand(b, h, 1, d), k], dim=2)
    v = torch.cat([attn.null_kv[1].expand(b, h, 1, d), v], dim=2)
    real = context_mask if mask else torch.ones_like(context_mask)
    if extend == "front":
        keep = torch.cat([real.new_ones(b, 1), real], dim=1)
    elif extend == "end":
        keep = torch.cat([real, real.new_ones(b, 1)], dim=1)
    else:
        keep = real
    return k, v, keep


def cached_attention(x, k, v, keep, attn, *, mask=True, merge="heads", scale=True):
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    q = attn.to_q(attn.norm(x)).reshape(b, n, h, d).permute(0, 2, 1, 3)
    scores = torch.einsum("bhnd,bhmd->bhnm", q, k) / (math.sqrt(d) if scale else 1.0)
    if mask:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1)
    if merge == "heads":
        merged = torch.einsum("bhnm,bhmd->bnhd", weights, v).reshape(b, n, h * d)
    else:
        merged = (weights @ v).reshape(b, n, h * d)
    return attn.to_out(merged)


def composed(uncond, conds, cond_scales, *, reverse=False):
    guided = uncond.clone()
    for cond, weight in zip(conds, cond_scales):
        guided = guided + weight * ((uncond - cond) if reverse else (cond - uncond))
    return guided


def negative_guidance(unet, x, time, text_embeds, text_mask, negative_embeds, negative_mask, cond_scale, *,
                      combine=composed, masks=True, pad_value=False, drop_negative=False, two_passes=False):
    n = max(text_embeds.shape[1], negative_embeds.shape[1])

    def padded(embeds, mask):
        extra = n - embeds.shape[1]
        return F.pad(embeds, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=pad_value)

    (e1, m1), (e2, m2) = padded(text_embeds, text_mask), padded(negative_embeds, negative_mask)
    keep = torch.tensor([True, True, False, False]) if drop_negative else None
    mask = torch.cat([m1, m2]) if masks else None
    if two_passes:
        cond = unet(x, time, text_embeds=e1, text_mask=m1)
        negative = unet(x, time, text_embeds=e2, text_mask=m2)
    else:
        out = unet(torch.cat([x, x]), torch.cat([time, time]), text_embeds=torch.cat([e1, e2]), text_mask=mask,
                   text_keep_mask=keep)
        cond, negative = out.chunk(2)
    return combine(negative, [cond], [cond_scale])


def level_for_snr(snr, *, root=1.0, sqrt=True):
    quadratic = -torch.log(snr / (1 + snr))
    discriminant = 0.1**2 + 4 * 9.95 * quadratic
    return (root * (torch.sqrt(discriminant) if sqrt else discriminant) - 0.1) / (2 * 9.95)


def train_step(unet, diffusion, optimizer, images, text_embeds, text_mask, generator, *, target="v", sign=1.0,
               table="alphas_cumprod", sqrt=True, mask=True, time_shift=1, zero_grad=True, step=True):
    b = images.shape[0]
    t = torch.randint(0, diffusion.timesteps, (b,), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    a_t = getattr(diffusion, table)[t][:, None, None, None]
    r_a, r_1a = (a_t.sqrt(), (1 - a_t).sqrt()) if sqrt else (a_t, 1 - a_t)
    v = sign * (r_a * noise - r_1a * images)
    goal = {"v": v, "eps": noise, "x0": images}[target]
    time = (t.float() + time_shift) / diffusion.timesteps
    prediction = unet(diffusion.q_sample(images, t, noise), time, text_embeds=text_embeds,
                      text_mask=text_mask if mask else None)
    loss = F.mse_loss(prediction, goal)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return loss.item()


def with_mistake(fn, **mistake):
    return lambda *args: fn(*args, **mistake)


# Right answers pass ------------------------------------------------------------------------------


RIGHT = [
    (checks.check_shifted_schedule, (shifted,)),
    (checks.check_respaced_betas, (respaced,)),
    (checks.check_forward_jump, (jump,)),
    (checks.check_posterior, (post,)),
    (checks.check_eps_from_v, (eps_from_v,)),
    (checks.check_ddim_eta_step, (ddim_eta, post)),
    (checks.check_dpm_solver_step, (dpm_step,)),
    (checks.check_thresholded_eps, (thresholded_eps,)),
    (checks.check_text_keys_values, (text_kv,)),
    (checks.check_cached_cross_attention, (cached_attention,)),
    (checks.check_composed_guidance, (composed,)),
    (checks.check_negative_guidance, (negative_guidance, composed)),
    (checks.check_level_for_snr, (level_for_snr,)),
    (checks.check_training_step, (train_step,)),
]


def test_every_check_is_tested():
    assert {check.__name__ for check, _ in RIGHT} == set(checks.__all__)


@pytest.mark.parametrize("check,fns", RIGHT, ids=[c.__name__ for c, _ in RIGHT])
def test_right_answer_passes_quickly(check, fns, capsys):
    start = time.perf_counter()
    assert_passes(check, *fns, capsys=capsys)
    assert time.perf_counter() - start < 5  # < 1 s on a laptop; generous for loaded CI machines


@pytest.mark.parametrize("check", [c for c, _ in RIGHT], ids=[c.__name__ for c, _ in RIGHT])
def test_not_done_yet_is_reported_without_traceback(check, capsys):
    def todo(*args, **kwargs):
        raise NotImplementedError("Exercise 9.9: write it")

    ok, line = run_check(check, todo, capsys=capsys)
    assert not ok
    assert line == "✗ Exercise 9.9 is not done yet: write it"


def test_other_errors_are_one_line_with_a_hint(capsys):
    def no_broadcast(x_s, s, t, noise, schedule):
        return (schedule.alphas_cumprod[t] / schedule.alphas_cumprod[s]).sqrt() * x_s  # (b,) against (b, c, h, w)

    assert_fails(checks.check_forward_jump, no_broadcast, capsys=capsys, expected=("raised RuntimeError", "(b, 1, 1, 1)"))


def test_not_a_function(capsys):
    ok, line = run_check(checks.check_forward_jump, 3, capsys=capsys)
    assert not ok and "pass your function itself" in line


def test_checks_leave_the_global_random_state_alone(capsys):
    torch.manual_seed(123)
    checks.check_text_keys_values(text_kv)  # builds its own seeded Attention layer
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
    capsys.readouterr()


def test_an_unrecognised_mistake_gets_numbers_not_a_made_up_diagnosis(capsys):
    line = assert_fails(checks.check_forward_jump, lambda *a: jump(*a) + 0.01, capsys=capsys, expected=("off by up to 0.01",))
    assert "—" not in line


# The classes of mistakes: each is named wherever it can happen -------------------------------------


@pytest.mark.parametrize("check,fns,hint", [
    (checks.check_forward_jump, (with_mistake(jump, sqrt=False),), "missing sqrt"),
    (checks.check_eps_from_v, (with_mistake(eps_from_v, sqrt=False),), "missing sqrt"),
    (checks.check_ddim_eta_step, (with_mistake(ddim_eta, sqrt=False), post), "missing sqrt"),
    (checks.check_dpm_solver_step, (with_mistake(dpm_step, sqrt=False),), "missing sqrt"),
    (checks.check_thresholded_eps, (with_mistake(thresholded_eps, sqrt=False),), "missing sqrt"),
    (checks.check_level_for_snr, (with_mistake(level_for_snr, sqrt=False),), "missing sqrt"),
    (checks.check_training_step, (with_mistake(train_step, sqrt=False),), "missing sqrt"),
], ids=["forward_jump", "eps_from_v", "ddim_eta_step", "dpm_solver_step", "thresholded_eps", "level_for_snr",
        "training_step"])
def test_a_missing_square_root_is_named(check, fns, hint, capsys):
    assert_fails(check, *fns, capsys=capsys, expected=(hint,))


@pytest.mark.parametrize("check,fns,hint", [
    (checks.check_eps_from_v, (with_mistake(eps_from_v, sign=-1.0),), "wrong sign"),
    (checks.check_ddim_eta_step, (with_mistake(ddim_eta, sign=-1.0), post), "wrong sign"),
    (checks.check_dpm_solver_step, (with_mistake(dpm_step, sign=-1.0),), "wrong sign of h"),
    (checks.check_thresholded_eps, (with_mistake(thresholded_eps, sign=-1.0),), "wrong sign"),
    (checks.check_training_step, (with_mistake(train_step, sign=-1.0),), "wrong sign"),
    (checks.check_composed_guidance, (with_mistake(composed, reverse=True),), "wrong sign"),
    (checks.check_level_for_snr, (with_mistake(level_for_snr, root=-1.0),), "negative root"),
], ids=["eps_from_v", "ddim_eta_step", "dpm_solver_step", "thresholded_eps", "training_step", "composed_guidance",
        "level_for_snr"])
def test_a_wrong_sign_is_named(check, fns, hint, capsys):
    assert_fails(check, *fns, capsys=capsys, expected=(hint,))


@pytest.mark.parametrize("check,fn", [
    (checks.check_respaced_betas, with_mistake(respaced, table="alphas")),
    (checks.check_forward_jump, with_mistake(jump, table="alphas")),
    (checks.check_eps_from_v, with_mistake(eps_from_v, table="alphas")),
    (checks.check_dpm_solver_step, with_mistake(dpm_step, table="alphas")),
    (checks.check_thresholded_eps, with_mistake(thresholded_eps, table="alphas")),
    (checks.check_training_step, with_mistake(train_step, table="alphas")),
], ids=["respaced_betas", "forward_jump", "eps_from_v", "dpm_solver_step", "thresholded_eps", "training_step"])
def test_alphas_where_alphas_cumprod_belongs_is_named(check, fn, capsys):
    assert_fails(check, fn, capsys=capsys, expected=("alphas (one step", "alphas_cumprod belongs"))


@pytest.mark.parametrize("check,fn,hint", [
    (checks.check_posterior, with_mistake(post, swap_x=True), "x_t and x0 are swapped"),
    (checks.check_posterior, lambda x_t, x0, a_t, a_s: post(x_t, x0, a_s, a_t), "a_t and a_s are swapped"),
    (checks.check_forward_jump, with_mistake(jump, swap_st=True), "is s the EARLIER step?"),
    (checks.check_negative_guidance, None, "reversed"),
], ids=["posterior_x", "posterior_a", "forward_jump_s_t", "negative_guidance_halves"])
def test_swapped_arguments_are_named(check, fn, hint, capsys):
    if fn is None:  # the caption and the negative prompt swapped in the call of 6.1
        fns = (with_mistake(negative_guidance, combine=lambda negative, conds, scales: composed(conds[0], [negative], scales)),
               composed)
    else:
        fns = (fn,)
    assert_fails(check, *fns, capsys=capsys, expected=(hint,))


def test_heads_split_the_wrong_way_is_named(capsys):
    assert_fails(checks.check_text_keys_values, with_mistake(text_kv, split="dims"), capsys=capsys,
                 expected=("heads split the wrong way",))
    assert_fails(checks.check_cached_cross_attention, with_mistake(cached_attention, merge="dims"), capsys=capsys,
                 expected=("heads merged the wrong way",))


@pytest.mark.parametrize("check,fns", [
    (checks.check_text_keys_values, (with_mistake(text_kv, mask=False),)),
    (checks.check_cached_cross_attention, (with_mistake(cached_attention, mask=False),)),
    (checks.check_negative_guidance, (with_mistake(negative_guidance, masks=False), composed)),
    (checks.check_training_step, (with_mistake(train_step, mask=False),)),
], ids=["text_keys_values", "cached_cross_attention", "negative_guidance", "training_step"])
def test_a_forgotten_text_mask_is_named_in_every_exercise_that_takes_one(check, fns, capsys):
    assert_fails(check, *fns, capsys=capsys, expected=("forgot the text mask",))


def test_the_mask_not_extended_for_the_null_token_is_named(capsys):
    assert_fails(checks.check_text_keys_values, with_mistake(text_kv, extend="no"), capsys=capsys,
                 expected=("not extended for the null token",))
    assert_fails(checks.check_text_keys_values, with_mistake(text_kv, extend="end"), capsys=capsys,
                 expected=("belongs to the null key, which is FIRST",))
    # padding added for one batch must be masked too: the same idea in the guidance exercise
    assert_fails(checks.check_negative_guidance, with_mistake(negative_guidance, pad_value=True), composed,
                 capsys=capsys, expected=("pad its mask with False",))


@pytest.mark.parametrize("check,fn", [
    (checks.check_respaced_betas, with_mistake(respaced, shift=-1)),
    (checks.check_forward_jump, with_mistake(jump, shift=-1)),
    (checks.check_eps_from_v, with_mistake(eps_from_v, shift=-1)),
    (checks.check_dpm_solver_step, with_mistake(dpm_step, shift=-1)),
    (checks.check_thresholded_eps, with_mistake(thresholded_eps, shift=-1)),
    (checks.check_training_step, with_mistake(train_step, time_shift=0)),
], ids=["respaced_betas", "forward_jump", "eps_from_v", "dpm_solver_step", "thresholded_eps", "training_step"])
def test_t_off_by_one_is_named(check, fn, capsys):
    assert_fails(check, fn, capsys=capsys, expected=("off by one",))


def test_a_failure_from_an_earlier_exercise_names_it(capsys):
    wrong_posterior = with_mistake(post, beta_from_clean=True)
    step_calling_it = with_mistake(ddim_eta, posterior_fn=wrong_posterior)
    assert_fails(checks.check_ddim_eta_step, step_calling_it, wrong_posterior, capsys=capsys,
                 expected=("calls your answer to Exercise 2.1, which is wrong", "check_posterior"))

    reversed_formula = with_mistake(composed, reverse=True)
    guidance_calling_it = with_mistake(negative_guidance, combine=reversed_formula)
    assert_fails(checks.check_negative_guidance, guidance_calling_it, reversed_formula, capsys=capsys,
                 expected=("calls your answer to Exercise 6.1, which is wrong", "check_composed_guidance"))


def test_an_earlier_exercise_not_done_yet_is_named(capsys):
    def todo(*args):
        raise NotImplementedError("Exercise 2.1: write the posterior")

    step_calling_it = with_mistake(ddim_eta, posterior_fn=todo)
    assert_fails(checks.check_ddim_eta_step, step_calling_it, todo, capsys=capsys,
                 expected=("Exercise 2.1 is not done yet",))


def test_a_right_step_is_not_blamed_on_a_wrong_earlier_answer(capsys):
    """The earlier answer only matters when the current one is wrong: a right step with its own posterior passes."""
    assert_passes(checks.check_ddim_eta_step, ddim_eta, with_mistake(post, beta_from_clean=True), capsys=capsys)


# Mistakes particular to one exercise ---------------------------------------------------------------


def test_shifted_schedule_mistakes(capsys):
    check = checks.check_shifted_schedule
    assert_fails(check, with_mistake(shifted, scale_snr=False), capsys=capsys, expected=("multiplies the SNR",))
    assert_fails(check, lambda a, f: f * a / (1 - a), capsys=capsys, expected=("you returned the new SNR",))
    assert_fails(check, lambda a, f: shifted(a, 1 / f), capsys=capsys, expected=("upside down",))
    assert_fails(check, lambda a, f: shifted(a, f).float(), capsys=capsys, expected=("wrong dtype", "torch.float64"))


def test_respaced_betas_mistakes(capsys):
    check = checks.check_respaced_betas
    assert_fails(check, lambda s, times: s.betas[times], capsys=capsys, expected=("original chain's beta",))
    assert_fails(check, lambda s, times: respaced(s, times)[1:], capsys=capsys,
                 expected=("wrong shape", "starts from the clean image"))
    assert_fails(check, lambda s, times: 1 - respaced(s, times), capsys=capsys, expected=("alphas = 1 - beta",))


def test_forward_jump_mistakes(capsys):
    check = checks.check_forward_jump

    def from_clean(x_s, s, t, noise, schedule):
        a_t = schedule.alphas_cumprod[t][:, None, None, None]
        return a_t.sqrt() * x_s + (1 - a_t).sqrt() * noise

    assert_fails(check, from_clean, capsys=capsys, expected=("jump from the CLEAN image",))
    assert_fails(check, lambda *a: jump(*a)[0], capsys=capsys, expected=("wrong shape", "(4, 3, 8, 8)"))
    assert_fails(check, lambda *a: jump(*a).to("meta"), capsys=capsys, expected=("wrong device",))


def test_posterior_mistakes(capsys):
    check = checks.check_posterior
    assert_fails(check, lambda *a: post(*a)[0], capsys=capsys, expected=("return a pair (mean, var)",))
    assert_fails(check, with_mistake(post, beta_from_clean=True), capsys=capsys, expected=("1 - a_t / a_s",))
    assert_fails(check, lambda *a: (post(*a)[0], post(*a)[1].sqrt()), capsys=capsys, expected=("standard deviation",))
    assert_fails(check, lambda *a: (post(*a)[0], post(*a)[1].flatten()), capsys=capsys,
                 expected=("must broadcast", "(b, 1, 1, 1)"))


def test_eps_from_v_mistakes(capsys):
    assert_fails(checks.check_eps_from_v, lambda x_t, t, v, d: d.predict_start_from_v(x_t, t, v), capsys=capsys,
                 expected=("that is x0 from v",))


def test_ddim_eta_step_mistakes(capsys):
    check = checks.check_ddim_eta_step

    def total_noise_grows(x_t, x0, a_t, a_s, noise, eta):
        sigma2 = eta**2 * post(x_t, x0, a_t, a_s)[1]
        a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
        implied = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        return a_s.sqrt() * x0 + (1 - a_s).sqrt() * implied + sigma2.sqrt() * noise

    assert_fails(check, total_noise_grows, post, capsys=capsys, expected=("sqrt(1 - a_s - sigma^2)",))
    assert_fails(check, lambda x_t, x0, a_t, a_s, noise, eta: ddim_eta(x_t, x0, a_t, a_s, noise, 0.0), post,
                 capsys=capsys, expected=("left out the fresh noise",))


def test_dpm_solver_step_mistakes(capsys):
    check = checks.check_dpm_solver_step
    assert_fails(check, with_mistake(dpm_step, first_order=True), capsys=capsys, expected=("first-order (DDIM) step",))
    assert_fails(check, with_mistake(dpm_step, r_inverted=True), capsys=capsys, expected=("r is upside down",))
    assert_fails(check, with_mistake(dpm_step, log_snr_factor=1.0), capsys=capsys, expected=("HALF the log-SNR",))
    assert_fails(check, with_mistake(dpm_step, two=1), capsys=capsys, expected=("END of the jump",))
    assert_fails(check, with_mistake(dpm_step, two=-2), capsys=capsys, expected=("wrong sign", "PAST x0"))
    assert_fails(check, with_mistake(dpm_step, d_sqrt=False), capsys=capsys,
                 expected=("missing sqrt", "D's coefficient"))

    def swapped(x_t, x0, t, s, diffusion, x0_prev, t_prev):
        if x0_prev is None:
            return dpm_step(x_t, x0, t, s, diffusion)
        return dpm_step(x_t, x0_prev, t, s, diffusion, x0, t_prev)

    assert_fails(check, swapped, capsys=capsys, expected=("x0 and x0_prev are swapped",))

    def no_first_step(x_t, x0, t, s, diffusion, x0_prev, t_prev):
        return dpm_step(x_t, x0, t, s, diffusion, x0 + 0 * x0_prev, t_prev) + 0 * (x0 - x0_prev)

    assert_fails(check, no_first_step, capsys=capsys, expected=("raised TypeError", "x0_prev and t_prev are None"))

    def implied_noise_from_x0(x_t, x0, t, s, diffusion, x0_prev=None, t_prev=None):  # DDIM's form, D in one place
        a_t, a_s = (diffusion.alphas_cumprod[i].view(-1, 1, 1, 1) for i in (t, s))
        D = (dpm_step(x_t, x0, t, s, diffusion, x0_prev, t_prev) - ((1 - a_s) / (1 - a_t)).sqrt() * x_t
             ) / (a_s.sqrt() - a_t.sqrt() * ((1 - a_s) / (1 - a_t)).sqrt())
        return a_s.sqrt() * D + (1 - a_s).sqrt() * (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()

    assert_fails(check, implied_noise_from_x0, capsys=capsys, expected=("implied noise must come from D",))


def test_thresholded_eps_mistakes(capsys):
    check = checks.check_thresholded_eps
    assert_fails(check, lambda x_t, eps, t, d, p: eps, capsys=capsys, expected=("returned eps unchanged",))
    assert_fails(check, lambda x_t, eps, t, d, p: dynamic_threshold(d.predict_start_from_noise(x_t, t, eps), p),
                 capsys=capsys, expected=("returned the thresholded x0",))


def test_text_keys_values_mistakes(capsys):
    check = checks.check_text_keys_values
    assert_fails(check, lambda c, m, attn: text_kv(c, m, attn)[:2], capsys=capsys, expected=("return three things",))
    assert_fails(check, lambda c, m, attn: (*text_kv(c, m, attn)[:2], ~text_kv(c, m, attn)[2]), capsys=capsys,
                 expected=("inverted",))

    def no_null(context, context_mask, attn):
        k, v, keep = text_kv(context, context_mask, attn)
        return k[:, :, 1:], v[:, :, 1:], keep

    assert_fails(check, no_null, capsys=capsys, expected=("wrong shape", "null key/value is missing"))


def test_cached_cross_attention_mistakes(capsys):
    check = checks.check_cached_cross_attention
    assert_fails(check, with_mistake(cached_attention, scale=False), capsys=capsys, expected=("1 / sqrt(dim_head)",))

    def no_out(x, k, v, keep, attn):
        return cached_attention(x, k, v, keep, attn) @ torch.zeros(12, 16)

    assert_fails(check, no_out, capsys=capsys, expected=("wrong shape", "attn.to_out"))


def test_composed_guidance_mistakes(capsys):
    check = checks.check_composed_guidance
    assert_fails(check, lambda u, cs, ws: cs[0] + ws[0] * (cs[0] - u), capsys=capsys, expected=("started from cond",))
    assert_fails(check, lambda u, cs, ws: composed(u, cs[:1], ws[:1]), capsys=capsys, expected=("only the first caption",))
    assert_fails(check, lambda u, cs, ws: u + sum(w * (c - u) for c, w in zip(cs, ws)) / len(cs), capsys=capsys,
                 expected=("averaged",))


def test_negative_guidance_mistakes(capsys):
    check = checks.check_negative_guidance
    assert_fails(check, with_mistake(negative_guidance, drop_negative=True), composed, capsys=capsys,
                 expected=("dropped the text", "NEGATIVE prompt"))
    assert_fails(check, with_mistake(negative_guidance, two_passes=True), composed, capsys=capsys,
                 expected=("values are right", "2 time(s)", "ONE pass"))

    def unpadded(unet, x, time, text_embeds, text_mask, negative_embeds, negative_mask, cond_scale):
        out = unet(torch.cat([x, x]), torch.cat([time, time]), text_embeds=torch.cat([text_embeds, negative_embeds]),
                   text_mask=torch.cat([text_mask, negative_mask]))
        cond, negative = out.chunk(2)
        return composed(negative, [cond], [cond_scale])

    assert_fails(check, unpadded, composed, capsys=capsys, expected=("raised RuntimeError", "pad the shorter one"))

    def answer_key(unet, x, time, text_embeds, text_mask, negative_embeds, negative_mask, cond_scale):
        return unet.forward_with_cond_scale(x, time, cond_scale=cond_scale, text_embeds=text_embeds, text_mask=text_mask,
                                            negative_text_embeds=negative_embeds, negative_text_mask=negative_mask)

    assert_fails(check, answer_key, composed, capsys=capsys, expected=("answer key",))


def test_level_for_snr_mistakes(capsys):
    check = checks.check_level_for_snr
    assert_fails(check, lambda snr: (torch.sqrt(0.01 + 39.8 * -torch.log(snr)) - 0.1) / 19.9, capsys=capsys,
                 expected=("contains NaN", "SNR itself as alphas_cumprod"))
    assert_fails(check, lambda snr: (torch.sqrt(0.01 + 39.8 * torch.log1p(snr)) - 0.1) / 19.9, capsys=capsys,
                 expected=("1 - a (the noise variance)",))


def test_training_step_mistakes(capsys):
    check = checks.check_training_step
    assert_fails(check, with_mistake(train_step, target="eps"), capsys=capsys, expected=("noise-prediction loss",))
    assert_fails(check, with_mistake(train_step, target="x0"), capsys=capsys, expected=("not the clean images",))
    assert_fails(check, with_mistake(train_step, zero_grad=False), capsys=capsys, expected=("optimizer.zero_grad()",))
    assert_fails(check, with_mistake(train_step, step=False), capsys=capsys, expected=("did not change",))
    assert_fails(check, lambda *a: None, capsys=capsys, expected=("returned None",))
