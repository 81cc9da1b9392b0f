"""Checkers for the course exercises (exercises/ and solutions/ notebooks).

Each `check_*` takes the learner's function itself, runs it and minimagen's reference on small seeded
CPU inputs, prints ONE line and returns True (it matches) or False; a mismatch names what is wrong and,
when the answer equals a known wrong variant, which mistake that is:

    from minimagen.checks import check_q_sample
    check_q_sample(my_q_sample)   # ✓ check_q_sample: matches minimagen (max |diff| < 1e-6)

One module per course chapter, all on the shared machinery of `common`:

    common                running, reporting and comparing; inputs several chapters share
    noise_schedules       01  1.1 check_cosine_alphas_cumprod  1.2 check_beta_schedule  1.3 check_q_sample
    diffusion_steps       02  2.1 check_posterior  2.2 check_ddpm_step  2.3 check_ddim_step
    dynamic_thresholding  03  3.1 check_dynamic_threshold
    resnet_attention      04  4.1 check_film  4.2 check_cross_attention
    guidance              06  6.1 check_guidance_formula  6.2 check_guidance
    noise_augmentation    07  7.1 check_noise_augmentation
    training_step         09  9.1 check_training_step

Model code never imports this package.
"""

from .diffusion_steps import check_ddim_step, check_ddpm_step, check_posterior
from .dynamic_thresholding import check_dynamic_threshold
from .guidance import check_guidance, check_guidance_formula
from .noise_augmentation import check_noise_augmentation
from .noise_schedules import check_beta_schedule, check_cosine_alphas_cumprod, check_q_sample
from .resnet_attention import check_cross_attention, check_film
from .resnet_attention import attention_variant, film_reference  # noqa: F401 - reference helpers, not in __all__
from .training_step import check_training_step

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
