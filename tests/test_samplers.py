"""Specification of DPM-Solver++(2M), the guidance interval and the reverse loop of minimagen.samplers.

The solver is checked two ways: step by step against diffusers' DPMSolverMultistepScheduler fed the
same model outputs (skipped when diffusers is not installed), and on a Gaussian toy, data ~ N(mu, s^2),
whose exact x0 prediction and exact probability-flow solution are known in closed form.
"""
import pytest
import torch

from minimagen.diffusion import GaussianDiffusion
from minimagen.samplers import (check_guidance_interval, ddim_step, dpmpp_2m_step, guidance_at, noise_level,
                                sample_loop, sampling_timesteps)
from minimagen.thresholding import dynamic_threshold

from test_imagen import cascade, embeds

# The Gaussian toy -------------------------------------------------------------------------------

MU, S = 0.3, 0.5  # every pixel of the data is N(MU, S^2), independently


def toy(schedule="cosine", seed=0):
    """(alphas_cumprod float64, x_T, the exact x0 prediction, the exact end of the probability flow from x_T).

    With x0 ~ N(mu, s^2), x_t = sqrt(a) x0 + sqrt(1 - a) eps is N(sqrt(a) mu, a s^2 + 1 - a), and
        E[x0 | x_t] = mu + sqrt(a) s^2 / (a s^2 + 1 - a) (x_t - sqrt(a) mu).
    The probability-flow ODE moves every x_t along its own standardised value, so x_T ends at mu + s z
    where z = (x_T - sqrt(a_T) mu) / sqrt(a_T s^2 + 1 - a_T).
    """
    ac = GaussianDiffusion(schedule, 1000).alphas_cumprod.double()
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a_T = ac[-1]
    x_T = a_T.sqrt() * MU + (a_T * S**2 + 1 - a_T).sqrt() * z

    def denoise(x, t):
        a = ac[t]
        return MU + a.sqrt() * S**2 / (a * S**2 + 1 - a) * (x - a.sqrt() * MU)

    return ac, x_T, denoise, MU + S * z


def toy_error(sampler, steps, schedule="cosine"):
    ac, x_T, denoise, exact = toy(schedule)
    return (sample_loop(x_T, denoise, ac, sampling_timesteps(1000, steps), sampler) - exact).abs().max().item()


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_dpmpp_2m_reaches_the_exact_probability_flow_solution_of_a_gaussian(schedule):
    assert toy_error("dpmpp_2m", 25, schedule) < 0.04
    assert toy_error("dpmpp_2m", 50, schedule) < 0.005


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_dpmpp_2m_is_closer_than_ddim_at_every_step_count_from_eight(schedule):
    for steps in (8, 10, 15, 25, 50):
        assert toy_error("dpmpp_2m", steps, schedule) < toy_error("ddim", steps, schedule) / 1.1, steps


def test_dpmpp_2m_converges_faster_than_ddim_as_steps_grow():
    # DDIM is first order: doubling the steps halves its error. 2M, second order, gains far more.
    ddim_gain = toy_error("ddim", 10) / toy_error("ddim", 20)
    dpm_gain = toy_error("dpmpp_2m", 10) / toy_error("dpmpp_2m", 20)
    assert 1.8 < ddim_gain < 2.2
    assert dpm_gain > 2 * ddim_gain


# The step ------------------------------------------------------------------------------------------


def step_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g) * 2 - 1, torch.rand(
        2, 3, 4, 4, generator=g) * 2 - 1


def test_dpmpp_2m_without_a_previous_prediction_is_a_ddim_step():
    x_t, x0, _ = step_inputs()
    torch.testing.assert_close(dpmpp_2m_step(x_t, x0, 0.3, 0.6), ddim_step(x_t, x0, 0.3, 0.6))


def test_dpmpp_2m_with_an_unchanged_prediction_is_a_ddim_step():
    # The extrapolated D = x0 when x0 did not move, so the second-order step reduces to DDIM's.
    x_t, x0, _ = step_inputs()
    torch.testing.assert_close(dpmpp_2m_step(x_t, x0, 0.3, 0.6, x0, 0.1), ddim_step(x_t, x0, 0.3, 0.6))


def test_dpmpp_2m_moves_towards_where_the_prediction_is_heading():
    # D = x0 + (x0 - x0_prev) / (2 r): with a_prev, a_t, a_s equally spaced in lambda, r = 1.
    x_t, x0, x0_prev = step_inputs()
    lam = torch.tensor([-1.0, 0.0, 1.0])
    a_prev, a_t, a_s = torch.sigmoid(2 * lam).tolist()  # lambda = log(a / (1 - a)) / 2
    d = 1.5 * x0 - 0.5 * x0_prev
    torch.testing.assert_close(dpmpp_2m_step(x_t, x0, a_t, a_s, x0_prev, a_prev), ddim_step(x_t, d, a_t, a_s))


def test_dpmpp_2m_jump_to_the_clean_image_is_the_prediction():
    x_t, x0, x0_prev = step_inputs()
    assert torch.equal(dpmpp_2m_step(x_t, x0, 0.9, 1.0, x0_prev, 0.8), x0)


# Against diffusers ------------------------------------------------------------------------------


def fake_model(x, t):
    """Any smooth function of (x_t, t) stands in for the U-Net: both solvers get the same outputs."""
    return torch.sin(3 * x + t / 100) * 1.5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2's copy keyword, inside diffusers
@pytest.mark.parametrize("objective, prediction_type", [("eps", "epsilon"), ("x0", "sample"), ("v", "v_prediction")])
@pytest.mark.parametrize("schedule, timesteps, steps", [("cosine", 1000, 10), ("linear", 1000, 20), ("cosine", 200, 7)])
def test_dpmpp_2m_equals_diffusers_dpm_solver_multistep(objective, prediction_type, schedule, timesteps, steps):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
    diffusion = GaussianDiffusion(schedule, timesteps)
    plan = sampling_timesteps(timesteps, steps)
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=timesteps, trained_betas=diffusion.betas.numpy(), prediction_type=prediction_type,
        algorithm_type="dpmsolver++", solver_order=2, thresholding=True, dynamic_thresholding_ratio=0.9,
        sample_max_value=1e9, final_sigmas_type="zero")
    scheduler.set_timesteps(timesteps=[t for t, _ in plan])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    theirs = [x]
    for t in scheduler.timesteps:
        x = scheduler.step(fake_model(x, int(t)), t, x).prev_sample
        theirs.append(x)

    def denoise(x, t):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long)
        return dynamic_threshold(diffusion.model_output_to_start(fake_model(x, t), x, t_batch, objective), 0.9)

    ours = []
    sample_loop(theirs[0], denoise, diffusion.alphas_cumprod, plan, "dpmpp_2m",
                callback=lambda step, t, x_t, x0: ours.append(x_t))
    # Every x_t the model sees agrees, up to the last time (t = 0): diffusers takes the jump into it
    # second order, sample_loop first order (samplers.py says why).
    for step, (mine, reference) in enumerate(zip(ours[:-1], theirs[:-2])):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-4, msg=f"step {step}")
    # That jump, given the same history, agrees too.
    (t, s), (t_prev, _) = plan[-2], plan[-3]
    x0, x0_prev = denoise(ours[-2], t), denoise(ours[-3], t_prev)
    ac = diffusion.alphas_cumprod
    torch.testing.assert_close(dpmpp_2m_step(ours[-2], x0, ac[t], ac[s], x0_prev, ac[t_prev]), theirs[-2],
                               rtol=1e-4, atol=1e-4)


# The loop -------------------------------------------------------------------------------------------


def test_the_loop_takes_the_jump_into_the_last_time_first_order():
    ac, x_T, denoise, _ = toy()
    plan = sampling_timesteps(1000, 6)
    seen = []
    sample_loop(x_T, denoise, ac, plan, "dpmpp_2m", callback=lambda step, t, x_t, x0: seen.append((x_t, x0)))
    (t, s) = plan[-2]
    x_t, x0 = seen[-2]
    torch.testing.assert_close(seen[-1][0], ddim_step(x_t, x0, ac[t], ac[s]))


def test_eta_with_a_deterministic_solver_raises_value_error():
    ac, x_T, denoise, _ = toy()
    with pytest.raises(ValueError, match="eta"):
        sample_loop(x_T, denoise, ac, sampling_timesteps(1000, 4), "dpmpp_2m", eta=0.5)


# The guidance interval ------------------------------------------------------------------------------


def test_noise_level_is_the_standard_deviation_of_the_noise_in_x_t():
    assert noise_level(0.75).item() == pytest.approx(0.5)
    assert noise_level(1.0).item() == 0 and noise_level(0.0).item() == 1


def test_guidance_applies_only_inside_the_interval():
    assert guidance_at(5.0, 0.75, (0.4, 1.0)) == 5.0  # sigma 0.5
    assert guidance_at(5.0, 0.96, (0.4, 1.0)) == 1.0  # sigma 0.2
    assert guidance_at(5.0, 0.96, None) == 5.0


@pytest.mark.parametrize("bad", [(0.5, 0.2), (-0.1, 1.0), (0.2, 1.5), (0.2,), "0.2", (None, 1)])
def test_bad_guidance_intervals_raise_value_error_naming_them(bad):
    with pytest.raises(ValueError, match="guidance_interval"):
        check_guidance_interval(bad)


def counted(imagen):
    """Wrap each U-Net's forward to count the images it sees (a guided step sees each image twice)."""
    seen = [0]
    for unet in imagen.unets:
        def forward(x, *args, _forward=unet.forward, **kwargs):
            seen[0] += x.shape[0]
            return _forward(x, *args, **kwargs)
        unet.forward = forward
    return seen


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_guidance_interval_runs_one_unet_pass_outside_it(sampler):
    imagen = cascade(100)
    seen = counted(imagen)
    kwargs = dict(text_embeds=embeds(b=2), cond_scale=(4.0, 2.0), sampler=sampler, steps=10, seed=0, progress=False)
    imagen.sample(**kwargs)
    assert seen[0] == 2 * 2 * (10 + 10)  # every step guided: two passes per image, both stages
    seen[0] = 0
    imagen.sample(guidance_interval=(0.5, 1.0), **kwargs)
    ac = imagen.noise_schedulers[0].alphas_cumprod
    inside = sum(0.5 <= noise_level(ac[t]) <= 1.0 for t, _ in sampling_timesteps(100, 10))
    assert 0 < inside < 10
    assert seen[0] == 2 * 2 * (inside + inside) + 2 * 2 * (10 - inside)


def test_a_guidance_interval_covering_every_level_changes_nothing():
    imagen = cascade(20)
    kwargs = dict(text_embeds=embeds(b=2), cond_scale=3.0, sampler="dpmpp_2m", steps=5, seed=0, progress=False)
    torch.testing.assert_close(imagen.sample(guidance_interval=(0.0, 1.0), **kwargs), imagen.sample(**kwargs))


def test_an_empty_guidance_interval_samples_as_without_guidance():
    imagen = cascade(20)
    kwargs = dict(text_embeds=embeds(b=2), sampler="ddim", steps=5, seed=0, progress=False)
    torch.testing.assert_close(imagen.sample(guidance_interval=(0.0, 0.0), cond_scale=3.0, **kwargs),
                               imagen.sample(cond_scale=1.0, **kwargs), rtol=1e-4, atol=1e-5)


def test_sample_rejects_a_bad_guidance_interval_before_any_work():
    imagen = cascade(20)
    seen = counted(imagen)
    with pytest.raises(ValueError, match="guidance_interval"):
        imagen.sample(text_embeds=embeds(b=1), guidance_interval=(0.8, 0.2), progress=False)
    assert seen[0] == 0


def test_imagen_samples_with_dpmpp_2m_in_unit_range():
    imagen = cascade(20)
    out = imagen.sample(text_embeds=embeds(b=2), sampler="dpmpp_2m", steps=4, seed=0, progress=False)
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
