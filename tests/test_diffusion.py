"""Specification of minimagen.diffusion (forward process, posterior, eps/x0/v, losses) and
minimagen.samplers (DDPM and DDIM reverse steps, sampling time plans).

Expected values come from formulas written out in each test, not from the code under test.
"""
import pytest
import torch
import torch.nn.functional as F

from minimagen.diffusion import GaussianDiffusion
from minimagen.samplers import ddim_step, ddpm_step, posterior, sampling_timesteps
from minimagen.schedules import beta_schedule


def col(values, t):
    """values (T,) at t (b,) as (b, 1, 1, 1), float64."""
    return values.double()[t].view(-1, 1, 1, 1)


def exact_schedule(name="cosine", timesteps=1000):
    """betas and alphas_cumprod in float64 (the buffers are float32, too coarse for 1 - a_t near t = 0)."""
    betas = beta_schedule(name, timesteps)
    return betas, torch.cumprod(1 - betas, 0)


@pytest.fixture
def diffusion():
    return GaussianDiffusion("cosine", 1000)


# Forward process -----------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0, 300, 700, 999])
def test_q_sample_has_the_mean_and_variance_of_q_xt_given_x0(diffusion, t):
    torch.manual_seed(0)
    x0 = torch.full((20000, 1, 2, 2), 0.7)
    x_t = diffusion.q_sample(x0, torch.full((20000,), t))
    a = diffusion.alphas_cumprod[t].double().item()
    samples = x_t.double().flatten()  # 80000 independent draws
    assert samples.mean().item() == pytest.approx(a**0.5 * 0.7, abs=0.015)
    assert samples.var().item() == pytest.approx(1 - a, rel=0.03, abs=1e-6)


def test_q_sample_mixes_x0_and_noise_with_each_rows_own_timestep(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    a = col(exact_schedule()[1], t)
    expected = a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double()
    torch.testing.assert_close(diffusion.q_sample(x0, t, noise).double(), expected, rtol=1e-5, atol=1e-6)


def test_q_sample_continuous_at_time_zero_returns_x_start_exactly():
    torch.manual_seed(0)
    for name in ("linear", "cosine"):
        x0 = torch.randn(3, 3, 8, 8)
        assert torch.equal(GaussianDiffusion(name, 10).q_sample_continuous(x0, torch.zeros(3)), x0)


def test_q_sample_continuous_agrees_with_q_sample_at_discrete_times(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    t = torch.tensor([0, 400, 900])
    continuous = diffusion.q_sample_continuous(x0, diffusion.time_to_tau(t), noise)
    torch.testing.assert_close(continuous, diffusion.q_sample(x0, t, noise), rtol=1e-4, atol=1e-5)


def test_sample_random_times_are_valid_step_indices(diffusion):
    torch.manual_seed(0)
    t = diffusion.sample_random_times(10000)
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999
    assert t.min() < 50 and t.max() > 950  # covers the whole range


# Posterior -----------------------------------------------------------------------------------


def test_posterior_of_one_step_matches_the_gaussian_posterior_formula():
    """For the jump t -> t - 1, q(x_{t-1} | x_t, x0) has DDPM's mean and variance (Ho et al. eq. 6-7)."""
    torch.manual_seed(0)
    x0, x_t = torch.randn(5, 3, 4, 4).double(), torch.randn(5, 3, 4, 4).double()
    t = torch.tensor([0, 1, 50, 500, 999])
    betas, alphas_cumprod = exact_schedule()
    beta, ac = col(betas, t), col(alphas_cumprod, t)
    ac_prev = torch.where(t.view(-1, 1, 1, 1) > 0, col(alphas_cumprod, (t - 1).clamp(min=0)), 1.0)
    expected_mean = (ac_prev.sqrt() * beta / (1 - ac)) * x0 + ((1 - beta).sqrt() * (1 - ac_prev) / (1 - ac)) * x_t
    expected_var = beta * (1 - ac_prev) / (1 - ac)
    mean, var = posterior(x_t, x0, ac.flatten(), ac_prev.flatten())
    torch.testing.assert_close(mean, expected_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(var.expand_as(expected_var), expected_var, rtol=1e-9, atol=1e-15)


def test_posterior_at_the_first_step_is_the_clean_image():
    """At t = 0 the previous 'noisy' image is x0 itself: the mean is x0 and the variance 0."""
    torch.manual_seed(0)
    x0, x_t = torch.randn(2, 3, 4, 4).double(), torch.randn(2, 3, 4, 4).double()
    ac = exact_schedule()[1]
    mean, var = posterior(x_t, x0, ac[0], torch.ones((), dtype=torch.float64))
    torch.testing.assert_close(mean, x0, rtol=1e-6, atol=1e-6)
    assert var.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("jump", (1, 7, 100))
def test_posterior_marginalises_back_to_q_of_the_earlier_time(jump):
    """If x_t ~ q(x_t | x0), then x_s ~ q(x_s | x_t, x0) is distributed as q(x_s | x0), for any jump
    t -> s: coef_x0 + coef_xt sqrt(a_t) = sqrt(a_s) and coef_xt^2 (1 - a_t) + var = 1 - a_s. The
    coefficients are read off posterior() by feeding it unit x0 and x_t."""
    ac = exact_schedule()[1]
    t = torch.arange(jump, 1000, 37)
    a_t, a_s = ac[t], ac[t - jump]
    ones, zeros = torch.ones(len(t), 1, 1, 1, dtype=torch.float64), torch.zeros(len(t), 1, 1, 1, dtype=torch.float64)
    coef_x0 = posterior(zeros, ones, a_t, a_s)[0].flatten()
    coef_xt, var = posterior(ones, zeros, a_t, a_s)
    coef_xt, var = coef_xt.flatten(), var.flatten()
    torch.testing.assert_close(coef_x0 + coef_xt * a_t.sqrt(), a_s.sqrt(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(coef_xt**2 * (1 - a_t) + var, 1 - a_s, rtol=1e-9, atol=1e-12)


# eps / x0 / v ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_predict_start_from_noise_inverts_q_sample(name):
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(name, 1000)
    x0, noise = torch.rand(6, 3, 8, 8) * 2 - 1, torch.randn(6, 3, 8, 8)
    t = torch.tensor([0, 1, 100, 500, 800, 900])
    x_t = diffusion.q_sample(x0, t, noise)
    torch.testing.assert_close(diffusion.predict_start_from_noise(x_t, t, noise), x0, rtol=0, atol=1e-4)


def test_predict_noise_from_start_inverts_q_sample(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.rand(5, 3, 8, 8) * 2 - 1, torch.randn(5, 3, 8, 8)
    t = torch.tensor([5, 100, 500, 900, 999])  # from t = 5 on, sqrt(1 - a_t) is not tiny
    x_t = diffusion.q_sample(x0, t, noise)
    torch.testing.assert_close(diffusion.predict_noise_from_start(x_t, t, x0), noise, rtol=0, atol=1e-3)


def test_v_is_sqrt_a_eps_minus_sqrt_one_minus_a_x0(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    t = torch.tensor([0, 500, 999])
    a = col(diffusion.alphas_cumprod, t)
    expected = a.sqrt() * noise.double() - (1 - a).sqrt() * x0.double()
    torch.testing.assert_close(diffusion.predict_v(x0, t, noise).double(), expected, rtol=1e-5, atol=1e-6)


def test_predict_start_from_v_inverts_q_sample_at_every_time(diffusion):
    torch.manual_seed(0)
    x0, noise = torch.rand(5, 3, 8, 8) * 2 - 1, torch.randn(5, 3, 8, 8)
    t = torch.tensor([0, 1, 500, 998, 999])  # v is well conditioned even at the very end
    x_t = diffusion.q_sample(x0, t, noise)
    v = diffusion.predict_v(x0, t, noise)
    torch.testing.assert_close(diffusion.predict_start_from_v(x_t, t, v), x0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_model_output_to_start_recovers_x0_from_a_perfect_prediction(diffusion, objective):
    torch.manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 250, 600, 900])
    x_t = diffusion.q_sample(x0, t, noise)
    perfect = {"eps": noise, "x0": x0, "v": diffusion.predict_v(x0, t, noise)}[objective]
    torch.testing.assert_close(diffusion.model_output_to_start(perfect, x_t, t, objective), x0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_training_target_is_what_each_objective_predicts(diffusion, objective):
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    t = torch.tensor([3, 300, 900])
    a = col(diffusion.alphas_cumprod, t)
    expected = {
        "eps": noise.double(),
        "x0": x0.double(),
        "v": a.sqrt() * noise.double() - (1 - a).sqrt() * x0.double(),
    }[objective]
    torch.testing.assert_close(diffusion.training_target(x0, noise, t, objective).double(), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", ["noise", "epsilon", ""])
def test_unknown_objective_raises_value_error(diffusion, bad):
    x, t = torch.zeros(1, 3, 2, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="objective"):
        diffusion.model_output_to_start(x, x, t, bad)
    with pytest.raises(ValueError, match="objective"):
        diffusion.training_target(x, x, t, bad)


# Losses --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type,torch_loss", [
    ("l1", F.l1_loss),
    ("l2", F.mse_loss),
    ("huber", lambda a, b: F.huber_loss(a, b, delta=1.0)),
])
def test_loss_types_equal_torchs_losses(diffusion, loss_type, torch_loss):
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 8, 8) * 2, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 100, 999])
    loss = diffusion.loss(pred, target, t, loss_type=loss_type)
    assert loss.ndim == 0
    torch.testing.assert_close(loss, torch_loss(pred, target))


def test_loss_types_differ_from_each_other(diffusion):
    torch.manual_seed(0)
    pred, target = torch.randn(2, 3, 8, 8) * 3, torch.randn(2, 3, 8, 8)
    t = torch.tensor([0, 1])
    values = {k: diffusion.loss(pred, target, t, loss_type=k).item() for k in ("l1", "l2", "huber")}
    assert len(set(values.values())) == 3


def test_loss_of_a_bf16_prediction_is_taken_in_fp32(diffusion):
    torch.manual_seed(0)
    pred, target = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    t = torch.tensor([0, 1])
    loss = diffusion.loss(pred.bfloat16(), target, t)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.mse_loss(pred.bfloat16().float(), target))


def test_unknown_loss_type_raises_value_error(diffusion):
    x, t = torch.zeros(1, 3, 2, 2), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="loss_type"):
        diffusion.loss(x, x, t, loss_type="l3")


@pytest.mark.parametrize("objective", ["eps", "v", "x0"])
def test_min_snr_weighting_follows_the_formula(diffusion, objective):
    """Per-image mse times min(snr, gamma) / snr (eps), / (snr + 1) (v), or min(snr, gamma) (x0)."""
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 100, 600, 999])
    gamma = 5.0
    ac = diffusion.alphas_cumprod.double()[t]
    snr = ac / (1 - ac)
    weight = {"eps": snr.clamp(max=gamma) / snr, "v": snr.clamp(max=gamma) / (snr + 1),
              "x0": snr.clamp(max=gamma)}[objective]
    per_image = ((pred.double() - target.double()) ** 2).flatten(1).mean(1)
    expected = (per_image * weight).mean()
    loss = diffusion.loss(pred, target, t, "l2", objective, min_snr_gamma=gamma)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_min_snr_weighting_only_down_weights_high_snr_steps_for_eps(diffusion):
    torch.manual_seed(0)
    pred, target = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    low_snr_t = torch.tensor([900])  # snr << 5: weight 1
    high_snr_t = torch.tensor([10])  # snr >> 5: weight 5 / snr
    plain = diffusion.loss(pred, target, low_snr_t)
    assert diffusion.loss(pred, target, low_snr_t, min_snr_gamma=5.0).item() == pytest.approx(plain.item(), rel=1e-6)
    snr = diffusion.alphas_cumprod.double()[10] / (1 - diffusion.alphas_cumprod.double()[10])
    weighted = diffusion.loss(pred, target, high_snr_t, min_snr_gamma=5.0)
    assert weighted.item() == pytest.approx(plain.item() * 5.0 / snr.item(), rel=1e-4)
    assert weighted < plain


# Samplers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("timesteps,steps", [(1, 1), (10, None), (10, 10), (10, 3), (7, 6), (1000, 1),
                                             (1000, 7), (1000, 50), (1000, 999)])
def test_sampling_timesteps_cover_t_minus_one_down_to_minus_one(timesteps, steps):
    plan = sampling_timesteps(timesteps, steps)
    assert len(plan) == (timesteps if steps is None else steps)
    assert plan[0][0] == timesteps - 1 and plan[-1][1] == -1
    for (t, s), (next_t, _) in zip(plan, plan[1:]):
        assert s == next_t, "each step starts where the previous one landed"
    times = [t for t, _ in plan] + [-1]
    assert all(a > b for a, b in zip(times, times[1:])), "strictly decreasing"
    assert all(0 <= t < timesteps for t, _ in plan)


def test_sampling_timesteps_default_is_every_step():
    assert sampling_timesteps(4) == [(3, 2), (2, 1), (1, 0), (0, -1)]


@pytest.mark.parametrize("bad", [0, -1, 11, 2.5, "5", True])
def test_bad_sampling_steps_raise_value_error(bad):
    with pytest.raises(ValueError, match="steps"):
        sampling_timesteps(10, bad)


def _random_step_inputs(seed=0):
    torch.manual_seed(seed)
    x0, x_t = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    a_t, a_s = torch.tensor([0.1, 0.4, 0.02]), torch.tensor([0.3, 0.9, 0.5])  # per image, a_s > a_t
    return x_t, x0, a_t, a_s, torch.randn(3, 3, 8, 8)


def test_ddim_with_eta_one_equals_ddpm_given_the_same_noise():
    x_t, x0, a_t, a_s, noise = _random_step_inputs()
    torch.testing.assert_close(ddim_step(x_t, x0, a_t, a_s, noise, eta=1.0), ddpm_step(x_t, x0, a_t, a_s, noise),
                               rtol=1e-5, atol=1e-5)
    # and with scalar alphas
    torch.testing.assert_close(ddim_step(x_t, x0, 0.2, 0.7, noise, eta=1.0), ddpm_step(x_t, x0, 0.2, 0.7, noise),
                               rtol=1e-5, atol=1e-5)


def test_ddim_with_eta_zero_is_deterministic():
    x_t, x0, a_t, a_s, noise = _random_step_inputs()
    first = ddim_step(x_t, x0, a_t, a_s, None, eta=0.0)
    assert torch.equal(first, ddim_step(x_t, x0, a_t, a_s, noise, eta=0.0))
    assert torch.equal(first, ddim_step(x_t, x0, a_t, a_s, torch.randn_like(noise), eta=0.0))


def test_ddim_with_a_perfect_x0_lands_on_the_same_noise_trajectory():
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps  ->  x_s = sqrt(a_s) x0 + sqrt(1 - a_s) eps (same eps)."""
    diffusion = GaussianDiffusion("cosine", 100)
    torch.manual_seed(0)
    x0, eps = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8)
    for t, s in [(99, 80), (50, 10), (10, 9), (5, -1)]:
        x_t = diffusion.q_sample(x0, torch.full((2,), t), eps)
        a_t = diffusion.alphas_cumprod[t]
        a_s = diffusion.alphas_cumprod[s] if s >= 0 else torch.tensor(1.0)
        expected = a_s.double().sqrt() * x0.double() + (1 - a_s.double()).sqrt() * eps.double()
        torch.testing.assert_close(ddim_step(x_t, x0, a_t, a_s).double(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_follows_song_et_al_for_any_eta(eta):
    """x_s = sqrt(a_s) x0 + sqrt(1 - a_s - sigma^2) eps + sigma z,
    eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t), sigma = eta sqrt((1 - a_s) / (1 - a_t) (1 - a_t / a_s))."""
    x_t, x0, a_t, a_s, noise = _random_step_inputs()
    x_t, x0, z = x_t.double(), x0.double(), noise.double()
    a_t, a_s = a_t.double().view(-1, 1, 1, 1), a_s.double().view(-1, 1, 1, 1)
    eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
    expected = a_s.sqrt() * x0 + (1 - a_s - sigma**2).sqrt() * eps + sigma * z
    got = ddim_step(x_t.float(), x0.float(), a_t.flatten().float(), a_s.flatten().float(), noise, eta=eta)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def test_ddpm_step_samples_the_posterior_mean_and_variance():
    diffusion = GaussianDiffusion("linear", 50)
    torch.manual_seed(0)
    x0, x_t = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    t = torch.tensor([1, 25, 49])
    a_t, a_s = diffusion.alphas_cumprod[t], diffusion.alphas_cumprod[t - 1]
    mean, var = posterior(x_t, x0, a_t, a_s)
    torch.testing.assert_close(ddpm_step(x_t, x0, a_t, a_s, torch.zeros_like(x_t)), mean, rtol=1e-4, atol=1e-5)
    noise = torch.randn_like(x_t)
    torch.testing.assert_close(ddpm_step(x_t, x0, a_t, a_s, noise), mean + var.sqrt() * noise, rtol=1e-4, atol=1e-4)


def test_ddim_with_eta_above_zero_needs_noise():
    x_t, x0, a_t, a_s, _ = _random_step_inputs()
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x_t, x0, a_t, a_s, None, eta=0.5)


def test_final_jump_to_s_minus_one_returns_x0():
    """At s = -1, a_s = 1: the posterior is a point mass at x0."""
    x_t, x0, a_t, _, noise = _random_step_inputs()
    torch.testing.assert_close(ddpm_step(x_t, x0, a_t, torch.ones(3), noise), x0, rtol=0, atol=1e-6)
    torch.testing.assert_close(ddim_step(x_t, x0, a_t, torch.ones(3)), x0, rtol=0, atol=1e-6)
