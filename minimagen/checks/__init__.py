"""Checkers for the course exercises (exercises/ and solutions/ notebooks).

Each `check_*` takes the learner's function itself, runs it and minimagen's reference on small seeded
CPU inputs, prints ONE line and returns True (it matches) or False; a mismatch names what is wrong and,
when the answer equals a known wrong variant, which mistake that is:

    from minimagen.checks import check_posterior
    check_posterior(my_posterior)   # ✓ check_posterior: matches minimagen: mean and var (max |diff| < 1e-6)

One module per course chapter, all on the shared machinery of `common`:

    common                running, reporting and comparing; inputs several chapters share
    noise_schedules       01  1.1 check_shifted_schedule  1.2 check_respaced_betas  1.3 check_forward_jump
    diffusion_steps       02  2.1 check_posterior  2.2 check_eps_from_v  2.3 check_ddim_eta_step
                              2.4 check_dpm_solver_step
    dynamic_thresholding  03  3.1 check_thresholded_eps
    resnet_attention      04  4.1 check_text_keys_values  4.2 check_cached_cross_attention
    guidance              06  6.1 check_composed_guidance  6.2 check_negative_guidance
    noise_augmentation    07  7.1 check_level_for_snr
    training_step         09  9.1 check_training_step

A check whose exercise calls the learner's answer to an earlier one takes that answer too
(check_ddim_eta_step(my_ddim_step, my_posterior)), so that a failure it causes names the earlier exercise.
Where minimagen has the function, the reference is minimagen's; otherwise the checker module writes the
reference out (a pure function beside the check, with its equation in the docstring).

Model code never imports this package.
"""

from .diffusion_steps import check_ddim_eta_step, check_dpm_solver_step, check_eps_from_v, check_posterior
from .dynamic_thresholding import check_thresholded_eps
from .guidance import check_composed_guidance, check_negative_guidance
from .noise_augmentation import check_level_for_snr
from .noise_schedules import check_forward_jump, check_respaced_betas, check_shifted_schedule
from .resnet_attention import check_cached_cross_attention, check_text_keys_values
from .training_step import check_training_step

__all__ = [
    "check_shifted_schedule",
    "check_respaced_betas",
    "check_forward_jump",
    "check_posterior",
    "check_eps_from_v",
    "check_ddim_eta_step",
    "check_dpm_solver_step",
    "check_thresholded_eps",
    "check_text_keys_values",
    "check_cached_cross_attention",
    "check_composed_guidance",
    "check_negative_guidance",
    "check_level_for_snr",
    "check_training_step",
]
