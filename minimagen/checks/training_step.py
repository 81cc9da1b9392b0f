"""09 · Training on data: exercise 9.1 (one training step of the v objective)."""

import copy

import torch

from ..diffusion import GaussianDiffusion
from .common import _call, _checker, _close, _compare, _Failed, _passed, _text_inputs, _tiny_unet


def _training_step_reference(unet, diffusion, optimizer, images, text_embeds, text_mask, generator, *,
                             target="v", time="tau", order="t_first", loss="l2", mask=True, update=True):
    """One training step of the v objective the minimagen way (Imagen.forward with pred_objectives="v"),
    or with one known mistake. Returns the loss."""
    b = images.shape[0]
    if order == "t_first":
        t = diffusion.sample_random_times(b, generator=generator)
        noise = torch.randn(images.shape, generator=generator)
    else:
        noise = torch.randn(images.shape, generator=generator)
        t = diffusion.sample_random_times(b, generator=generator)
    x_t = diffusion.q_sample(images, t, noise)
    times = {"tau": diffusion.time_to_tau(t), "int": t.float(), "t/T": t.float() / diffusion.timesteps}[time]
    prediction = unet(x_t, times, text_embeds=text_embeds, text_mask=text_mask if mask else None)
    targets = {"v": lambda: diffusion.training_target(images, noise, t, "v"), "eps": lambda: noise,
               "x0": lambda: images, "-v": lambda: -diffusion.training_target(images, noise, t, "v"),
               "v_alphas": lambda: _v_with(diffusion.alphas, images, noise, t),
               "v_nosqrt": lambda: _v_with(diffusion.alphas_cumprod, images, noise, t, sqrt=False)}
    value = diffusion.loss(prediction, targets[target](), t, loss_type=loss)
    if update:
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return value.detach()


def _v_with(table, images, noise, t, sqrt=True):
    a = table[t].view(-1, 1, 1, 1)
    return (a.sqrt() * noise - (1 - a).sqrt() * images) if sqrt else (a * noise - (1 - a) * images)


@_checker
def check_training_step(fn):
    """Exercise 9.1. fn(unet, diffusion, optimizer, images, text_embeds, text_mask, generator) -> the loss,
    after one optimizer step of the v objective."""
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
        (variant_loss(target="eps"), "that is the noise-prediction loss: the target of the v objective is "
                                     "v = sqrt(a_t) eps - sqrt(1 - a_t) x0"),
        (variant_loss(target="x0"), "the target is v = sqrt(a_t) eps - sqrt(1 - a_t) x0, not the clean images"),
        (variant_loss(target="-v"), "wrong sign: v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (eps positive, x0 negative)"),
        (variant_loss(target="v_nosqrt"), "missing sqrt: v = sqrt(a_t) eps - sqrt(1 - a_t) x0"),
        (variant_loss(target="v_alphas"), "you used alphas (one step) where alphas_cumprod belongs, in v"),
        (variant_loss(mask=False), "you forgot the text mask: pass text_mask to the U-Net, or padded tokens are "
                                   "read as words"),
        (variant_loss(time="int"), "condition the U-Net on the continuous time (t + 1) / T "
                                   "(diffusion.time_to_tau), not on the integer t"),
        (variant_loss(time="t/T"), "t is off by one: the U-Net's time is (t + 1) / T (diffusion.time_to_tau)"),
        (variant_loss(order="noise_first"), "draw t first, then the noise, both from `generator` (the order matters "
                                            "for reproducibility)"),
        (variant_loss(loss="l1"), "use the mean squared error (l2)"),
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
