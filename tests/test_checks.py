"""The exercise checkers (minimagen.checks): a right answer passes, and every wrong answer fails with
its own hint, so that no check can pass everything. Each right answer is written the way a learner
would write it (the same code as in solutions/)."""
import math
import time

import pytest
import torch
import torch.nn.functional as F

from minimagen import checks
from minimagen.Imagen import resize_image_to
from minimagen.layers import ResnetBlock
from minimagen.schedules import MAX_BETA


def run_check(check, fn, capsys):
    """Run a check; return (its boolean result, the single line it printed)."""
    result = check(fn)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"a check prints exactly one line, got {out!r}"
    assert isinstance(result, bool)
    return result, lines[0]


def assert_passes(check, fn, capsys):
    ok, line = run_check(check, fn, capsys)
    assert ok, line
    assert line.startswith(f"✓ {check.__name__}: matches minimagen"), line
    assert "max |diff| < 1e-" in line, line


def assert_fails(check, fn, capsys, *expected):
    ok, line = run_check(check, fn, capsys)
    assert not ok, line
    assert line.startswith("✗ "), line
    for text in expected:
        assert text in line, f"expected {text!r} in: {line}"
    return line


# Right answers, as in the solutions ------------------------------------------------------------


def cosine_curve(tau, s=0.008):
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def betas_from_curve(curve, timesteps):
    taus = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    ac = curve(taus)
    return (1 - ac[1:] / ac[:-1]).clamp(1e-8, MAX_BETA)


def q_sample(x_start, t, noise, schedule):
    a = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x_start + (1 - a).sqrt() * noise


def post(x_t, x0, a_t, a_s):
    a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
    beta = 1 - a_t / a_s
    mean = a_s.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_s) / (1 - a_t) * x_t
    return mean, beta * (1 - a_s) / (1 - a_t)


def ddpm(x_t, x0, a_t, a_s, noise):
    mean, var = post(x_t, x0, a_t, a_s)
    return mean + var.sqrt() * noise


def ddim(x_t, x0, a_t, a_s):
    a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
    eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps


def threshold(x0, percentile, *, absolute=True, floor=True, divide=True, per_image=True):
    flat = x0.flatten(1)
    values = flat.abs() if absolute else flat
    s = torch.quantile(values, percentile, dim=1) if per_image else torch.quantile(values.flatten(), percentile)
    if floor:
        s = s.clamp(min=1)
    s = s.view(-1, 1, 1, 1) if per_image else s
    x = torch.maximum(torch.minimum(x0, s), -s)
    return x / s if divide else x


def film(h, time_cond, film, *, plus_one=True, swap=False):
    scale, shift = film(time_cond).chunk(2, dim=1)
    if swap:
        scale, shift = shift, scale
    scale, shift = scale[:, :, None, None], shift[:, :, None, None]
    return h * (scale + 1 if plus_one else scale) + shift


def cross_attention(x, context, context_mask, attn, *, mask=True, null=True, sdpa=False):
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    x, context = attn.norm(x), attn.norm_context(context)
    q = attn.to_q(x).view(b, n, h, d).transpose(1, 2)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    k = k.view(b, -1, h, d).transpose(1, 2)
    v = v.view(b, -1, h, d).transpose(1, 2)
    keep = context_mask
    if null:
        k = torch.cat([attn.null_kv[0].expand(b, h, 1, d), k], dim=2)
        v = torch.cat([attn.null_kv[1].expand(b, h, 1, d), v], dim=2)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), context_mask], dim=1)
    if sdpa:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :] if mask else None)
    else:
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        if mask:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = scores.softmax(dim=-1) @ v
    return attn.to_out(out.transpose(1, 2).reshape(b, n, h * d))


def combine(cond, uncond, cond_scale):
    return uncond + cond_scale * (cond - uncond)


def guided(unet, x, time, text_embeds, text_mask, cond_scale, *, batched=True, drop=True, formula=combine):
    b = x.shape[0]
    keep = torch.cat([torch.ones(b, dtype=torch.bool), torch.full((b,), not drop)])
    if batched:
        out = unet(torch.cat([x, x]), torch.cat([time, time]), text_embeds=torch.cat([text_embeds, text_embeds]),
                   text_mask=torch.cat([text_mask, text_mask]), text_keep_mask=keep)
        cond, uncond = out.chunk(2)
    else:
        cond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask)
        uncond = unet(x, time, text_embeds=text_embeds, text_mask=text_mask, text_keep_mask=keep[b:])
    return formula(cond, uncond, cond_scale)


def augment(images, low_size, high_size, noise_level, noise, schedule, *, normalise_first=True, down=True):
    x = images * 2 - 1 if normalise_first else images
    if down:
        x = resize_image_to(x, low_size)
    x = resize_image_to(x, high_size)
    a = schedule.continuous_alphas_cumprod(noise_level).view(-1, 1, 1, 1)
    x = a.sqrt() * x + (1 - a).sqrt() * noise
    return x if normalise_first else x * 2 - 1


def train_step(unet, diffusion, optimizer, images, text_embeds, text_mask, generator, *, target="eps",
               zero_grad=True, step=True):
    b = images.shape[0]
    t = torch.randint(0, diffusion.timesteps, (b,), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    x_t = diffusion.q_sample(images, t, noise)
    prediction = unet(x_t, diffusion.time_to_tau(t), text_embeds=text_embeds, text_mask=text_mask)
    loss = F.mse_loss(prediction, noise if target == "eps" else images)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    if step:
        optimizer.step()
    return loss.item()


# Right answers pass ------------------------------------------------------------------------------


RIGHT = [
    (checks.check_cosine_alphas_cumprod, cosine_curve),
    (checks.check_beta_schedule, betas_from_curve),
    (checks.check_q_sample, q_sample),
    (checks.check_posterior, post),
    (checks.check_ddpm_step, ddpm),
    (checks.check_ddim_step, ddim),
    (checks.check_dynamic_threshold, threshold),
    (checks.check_film, film),
    (checks.check_cross_attention, cross_attention),
    (checks.check_cross_attention, lambda *a: cross_attention(*a, sdpa=True)),
    (checks.check_guidance_formula, combine),
    (checks.check_guidance, guided),
    (checks.check_noise_augmentation, augment),
    (checks.check_training_step, train_step),
]


def test_every_check_is_tested():
    assert {check.__name__ for check, _ in RIGHT} == set(checks.__all__)


@pytest.mark.parametrize("check,fn", RIGHT, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(RIGHT)])
def test_right_answer_passes_quickly(check, fn, capsys):
    start = time.perf_counter()
    assert_passes(check, fn, capsys)
    assert time.perf_counter() - start < 5  # < 1 s on a laptop; generous for loaded CI machines


@pytest.mark.parametrize("check", [c for c, _ in RIGHT[:1]] + [getattr(checks, n) for n in checks.__all__[1:]])
def test_not_done_yet_is_reported_without_traceback(check, capsys):
    def todo(*args, **kwargs):
        raise NotImplementedError("Exercise 9.9: write it")

    ok, line = run_check(check, todo, capsys)
    assert not ok
    assert line == "✗ Exercise 9.9 is not done yet: write it"


def test_other_errors_are_one_line_with_a_hint(capsys):
    def no_broadcast(x_start, t, noise, schedule):
        return schedule.alphas_cumprod[t].sqrt() * x_start  # (b,) against (b, c, h, w)

    assert_fails(checks.check_q_sample, no_broadcast, capsys, "raised RuntimeError", "(b, 1, 1, 1)")

    def off_by_one_up(x_start, t, noise, schedule):
        a = schedule.alphas_cumprod[t + 1].view(-1, 1, 1, 1)
        return a.sqrt() * x_start + (1 - a).sqrt() * noise

    assert_fails(checks.check_q_sample, off_by_one_up, capsys, "raised IndexError", "not [t + 1]")


def test_not_a_function(capsys):
    ok, line = run_check(checks.check_q_sample, 3, capsys)
    assert not ok and "pass your function itself" in line


def test_checks_leave_the_global_random_state_alone(capsys):
    torch.manual_seed(123)
    checks.check_q_sample(q_sample)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
    capsys.readouterr()


# Wrong answers fail with their hint -------------------------------------------------------------


def test_cosine_curve_mistakes(capsys):
    s = 0.008
    check = checks.check_cosine_alphas_cumprod
    assert_fails(check, lambda tau: torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2, capsys, "divide f(tau) by f(0)")
    assert_fails(check, lambda tau: cosine_curve(tau).sqrt(), capsys, "missing the square")
    assert_fails(check, lambda tau: torch.cos(tau * math.pi / 2) ** 2, capsys, "offset s")
    assert_fails(check, lambda tau: cosine_curve(tau).float(), capsys, "wrong dtype", "torch.float64")
    assert_fails(check, lambda tau: cosine_curve(tau).flatten(), capsys, "wrong shape", "(3, 7)")
    line = assert_fails(check, lambda tau: cosine_curve(tau) + 0.01 * tau, capsys, "off by up to 0.01", "worst at [2, 6]")
    assert "—" not in line  # an unrecognised mistake gets numbers, not a made-up diagnosis


def test_beta_schedule_mistakes(capsys):
    check = checks.check_beta_schedule

    def ac_values(curve, T):
        return curve(torch.arange(T + 1, dtype=torch.float64) / T)

    assert_fails(check, lambda c, T: ac_values(c, T)[1:], capsys, "returned alphas_cumprod itself")
    assert_fails(check, lambda c, T: ac_values(c, T)[1:] / ac_values(c, T)[:-1], capsys, "you returned alphas")
    assert_fails(check, lambda c, T: 1 - ac_values(c, T)[1:], capsys, "variance after ALL t steps")
    assert_fails(check, lambda c, T: 1 - ac_values(c, T)[1:] / ac_values(c, T)[:-1], capsys, "forgot to clamp",
                 "(cosine curve, timesteps=10)")

    def t_points(c, T):
        ac = c(torch.linspace(0, 1, T, dtype=torch.float64))
        return (1 - ac[1:] / ac[:-1]).clamp(1e-8, MAX_BETA)

    assert_fails(check, t_points, capsys, "wrong shape", "expected (10,), got (9,)", "T + 1 times")
    assert_fails(check, lambda c, T: betas_from_curve(c, T).float(), capsys, "wrong dtype")


def test_q_sample_mistakes(capsys):
    check = checks.check_q_sample

    def with_coefficients(fa, fb, table="alphas_cumprod", shift=0):
        def fn(x_start, t, noise, schedule):
            a = getattr(schedule, table)[t + shift].view(-1, 1, 1, 1)
            return fa(a) * x_start + fb(a) * noise
        return fn

    assert_fails(check, with_coefficients(lambda a: a, lambda a: 1 - a), capsys, "missing sqrt")
    assert_fails(check, with_coefficients(lambda a: a.sqrt(), lambda a: 1 - a), capsys, "missing sqrt on the noise")
    assert_fails(check, with_coefficients(lambda a: a.sqrt(), lambda a: (1 - a).sqrt(), table="alphas"), capsys,
                 "alphas (one step) instead of alphas_cumprod")
    assert_fails(check, with_coefficients(lambda a: a.sqrt(), lambda a: (1 - a).sqrt(), shift=-1), capsys,
                 "off by one")
    assert_fails(check, with_coefficients(lambda a: (1 - a).sqrt(), lambda a: a.sqrt()), capsys, "swapped")
    assert_fails(check, lambda x, t, n, s: q_sample(x, t, n, s).double(), capsys, "wrong dtype")
    assert_fails(check, lambda x, t, n, s: q_sample(x, t, n, s)[0], capsys, "wrong shape", "(4, 3, 8, 8)")
    assert_fails(check, lambda x, t, n, s: q_sample(x, t, n, s).to("meta"), capsys, "wrong device")


def test_posterior_mistakes(capsys):
    check = checks.check_posterior
    assert_fails(check, lambda *a: post(*a)[0], capsys, "return a pair (mean, var)")

    def swapped(x_t, x0, a_t, a_s):
        return post(x0, x_t, a_t, a_s)

    assert_fails(check, swapped, capsys, "mean off by", "coefficients are swapped")

    def upper_bound(x_t, x0, a_t, a_s):
        mean, _ = post(x_t, x0, a_t, a_s)
        return mean, (1 - a_t / a_s).view(-1, 1, 1, 1)

    assert_fails(check, upper_bound, capsys, "var off by", "that is beta")
    assert_fails(check, lambda *a: (post(*a)[0], post(*a)[1].sqrt()), capsys, "standard deviation")
    assert_fails(check, lambda *a: (post(*a)[0], post(*a)[1].flatten()), capsys, "must broadcast", "(b, 1, 1, 1)")

    def alpha_not_sqrt(x_t, x0, a_t, a_s):
        _, var = post(x_t, x0, a_t, a_s)
        a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
        beta = 1 - a_t / a_s
        return a_s.sqrt() * beta / (1 - a_t) * x0 + (1 - beta) * (1 - a_s) / (1 - a_t) * x_t, var

    assert_fails(check, alpha_not_sqrt, capsys, "sqrt(1 - beta)")

    def one_step_beta(x_t, x0, a_t, a_s):  # beta = 1 - a_t: right only for the last step, a_s = 1
        return _wrong_beta_mean(x_t, x0, a_t, a_s), post(x_t, x0, a_t, a_s)[1]

    assert_fails(check, one_step_beta, capsys, "1 - a_t / a_s")


def _wrong_beta_mean(x_t, x0, a_t, a_s):
    a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
    beta = 1 - a_t
    return a_s.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_s) / (1 - a_t) * x_t


def test_ddpm_step_mistakes(capsys):
    check = checks.check_ddpm_step
    assert_fails(check, lambda x_t, x0, a_t, a_s, n: post(x_t, x0, a_t, a_s)[0] + post(x_t, x0, a_t, a_s)[1] * n,
                 capsys, "standard deviation sqrt(var)")
    assert_fails(check, lambda x_t, x0, a_t, a_s, n: post(x_t, x0, a_t, a_s)[0], capsys, "you returned the mean")


def test_ddim_step_mistakes(capsys):
    check = checks.check_ddim_step
    assert_fails(check, lambda x_t, x0, a_t, a_s: a_s.view(-1, 1, 1, 1).sqrt() * x0, capsys, "dropped the noise direction")
    assert_fails(check, lambda x_t, x0, a_t, a_s: ddim(x_t, x0, a_t, a_t), capsys, "returned x_t unchanged")
    assert_fails(check, lambda x_t, x0, a_t, a_s: post(x_t, x0, a_t, a_s)[0], capsys, "DDPM posterior mean")

    def eps_no_sqrt(x_t, x0, a_t, a_s):
        a_t, a_s = a_t.view(-1, 1, 1, 1), a_s.view(-1, 1, 1, 1)
        return a_s.sqrt() * x0 + (1 - a_s).sqrt() * (x_t - a_t.sqrt() * x0) / (1 - a_t)

    assert_fails(check, eps_no_sqrt, capsys, "eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)")


def test_dynamic_threshold_mistakes(capsys):
    check = checks.check_dynamic_threshold
    assert_fails(check, lambda x, p: threshold(x, p, divide=False), capsys, "forgot to divide by s")
    assert_fails(check, lambda x, p: threshold(x, p, absolute=False), capsys, "percentile of |x0|")
    assert_fails(check, lambda x, p: threshold(x, p, floor=False), capsys, "at least 1", "image 0")
    assert_fails(check, lambda x, p: threshold(x, p, per_image=False), capsys, "per image")
    assert_fails(check, lambda x, p: x.clamp(-1, 1), capsys, "static clipping")
    assert_fails(check, lambda x, p: threshold(x, 0.995), capsys, "percentile 0.995")


def test_film_mistakes(capsys):
    check = checks.check_film
    assert_fails(check, lambda h, c, f: film(h, c, f, plus_one=False), capsys, "forgot the + 1")
    assert_fails(check, lambda h, c, f: film(h, c, f, swap=True), capsys, "swapped")
    assert_fails(check, lambda h, c, f: h * f(c)[:, :8] + f(c)[:, 8:], capsys, "raised RuntimeError", "(b, c, 1, 1)")


def test_film_reference_is_the_resnet_block(capsys):
    """check_film's reference is exactly what ResnetBlock does."""
    torch.manual_seed(0)
    block = ResnetBlock(8, 8, time_cond_dim=16)
    x, cond = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    h = block.norm2(block.conv1(F.silu(block.norm1(x))))
    by_hand = block.conv2(F.silu(checks.film_reference(h, cond, block.film))) + block.skip(x)
    torch.testing.assert_close(by_hand, block(x, cond))


def test_cross_attention_mistakes(capsys):
    check = checks.check_cross_attention
    assert_fails(check, lambda *a: cross_attention(*a, mask=False), capsys, "padded tokens (mask False) changed")
    assert_fails(check, lambda *a: cross_attention(*a, mask=False, sdpa=True), capsys, "padded tokens")
    assert_fails(check, lambda *a: cross_attention(*a, null=False), capsys, "contains NaN", "null key/value")
    # SDPA gives NaN or zeros for a row with every key masked, depending on the PyTorch version
    assert_fails(check, lambda *a: cross_attention(*a, null=False, sdpa=True), capsys, "row 2", "attn.null_kv")
    assert_fails(check, lambda x, c, m, attn: cross_attention(x, c, ~m, attn), capsys, "inverted")

    def no_out(x, context, context_mask, attn):
        return cross_attention(x, context, context_mask, attn) @ torch.zeros(12, 16)

    assert_fails(check, no_out, capsys, "wrong shape", "attn.to_out")


def test_guidance_formula_mistakes(capsys):
    check = checks.check_guidance_formula
    assert_fails(check, lambda c, u, s: c + s * (u - c), capsys, "reversed")
    assert_fails(check, lambda c, u, s: c + s * (c - u), capsys, "cond_scale = 1 means no guidance")
    assert_fails(check, lambda c, u, s: s * (c - u), capsys, "forgot to add uncond")


def test_guidance_mistakes(capsys):
    check = checks.check_guidance
    assert_fails(check, lambda *a: guided(*a, formula=lambda c, u, s: c + s * (u - c)), capsys, "reversed")
    assert_fails(check, lambda *a: guided(*a, drop=False), capsys, "conditional prediction alone", "text_keep_mask")
    assert_fails(check, lambda *a: guided(*a, batched=False), capsys, "values are right", "2 time(s)", "ONE pass")

    def answer_key(unet, x, time, text_embeds, text_mask, cond_scale):
        return unet.forward_with_cond_scale(x, time, cond_scale=cond_scale, text_embeds=text_embeds, text_mask=text_mask)

    assert_fails(check, answer_key, capsys, "answer key")


def test_noise_augmentation_mistakes(capsys):
    check = checks.check_noise_augmentation
    assert_fails(check, lambda *a: augment(*a, normalise_first=False), capsys, "BEFORE adding noise")
    assert_fails(check, lambda *a: augment(*a, down=False), capsys, "skipped the downsizing")

    def one_minus_level(images, low, high, level, noise, schedule):
        x = resize_image_to(resize_image_to(images * 2 - 1, low), high)
        a = (1 - level).view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * noise

    assert_fails(check, one_minus_level, capsys, "not 1 - noise_level")

    def level_zero_noised(images, low, high, level, noise, schedule):
        return augment(images, low, high, level.clamp(min=0.05), noise, schedule)

    assert_fails(check, level_zero_noised, capsys, "level 0 must give the clean upsampled image")


def test_training_step_mistakes(capsys):
    check = checks.check_training_step
    assert_fails(check, lambda *a: train_step(*a, target="x0"), capsys, "loss is 0.4", "expected 1.1", "not with the clean images")
    assert_fails(check, lambda *a: train_step(*a, zero_grad=False), capsys, "optimizer.zero_grad()")
    assert_fails(check, lambda *a: train_step(*a, step=False), capsys, "did not change")
    assert_fails(check, lambda *a: None, capsys, "returned None")

    def integer_time(unet, diffusion, optimizer, images, text_embeds, text_mask, generator):
        b = images.shape[0]
        t = torch.randint(0, diffusion.timesteps, (b,), generator=generator)
        noise = torch.randn(images.shape, generator=generator)
        loss = F.mse_loss(unet(diffusion.q_sample(images, t, noise), t.float(), text_embeds=text_embeds,
                               text_mask=text_mask), noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    assert_fails(check, integer_time, capsys, "time_to_tau")
