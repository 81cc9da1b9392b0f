"""Imagen: a cascade of text-conditioned U-Nets (notebooks 06-08).

The base U-Net generates a small image (32 px) from the caption; each super-resolution U-Net
generates the next size up, conditioned on the caption and on the previous stage's image. Three
ideas make it work:

- Classifier-free guidance. During training the caption is dropped (`cond_drop_prob`), so one
  network learns both p(x | text) and p(x). At sampling both predictions come from one batched
  forward pass and are extrapolated: uncond + cond_scale * (cond - uncond).
- Noise conditioning augmentation. The low-resolution image a super-resolution stage sees is
  noised to a level `lowres_noise_level` in [0, 1] (random in training, fixed at sampling) and the
  stage is told that level, so it learns to fix the previous stage's artefacts instead of copying
  them. The image is normalised to [-1, 1] first, then noised, in training and sampling alike.
- Dynamic thresholding of the predicted clean image (see thresholding.py).

Images go in and come out in [0, 1]; inside, the model works in [-1, 1] (see images.py).
`Imagen.config` is the one record of the cascade's settings: every attribute reads it, and
`save_pretrained` writes it as-is to config.json, with the recommended sampling settings that
`sample()` uses for any argument the caller leaves out.
"""

import inspect
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import t5, validation
from .checkpoint import (CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, check_model_config, load_model_folder,
                         CheckpointError, load_weights, save_model_folder)
from .diffusion import LOSS_TYPES, OBJECTIVES, GaussianDiffusion
from .images import normalize, random_crop, resize_image_to, to_pil, unnormalize
from .samplers import SAMPLERS, check_guidance_interval, guidance_at, sample_loop, sampling_timesteps
from .thresholding import DYNAMIC_PERCENTILE, dynamic_threshold, static_threshold
from .Unet import Unet

__all__ = ["Imagen", "default_cond_scales", "default_sampling", "resize_image_to", "random_crop"]

def _per_stage(value, stages: int, name: str) -> tuple:
    """One value for every stage, or one per stage -> a tuple of length `stages`."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * stages
    if len(values) != stages:
        raise ValueError(f"{name} must be one value or one per U-Net ({stages}), got {len(values)}")
    return values


def default_cond_scales(stages: int, base: float = 3.0) -> tuple:
    """The guidance our small cascades sample best with: `base` on the base U-Net, 1 (no guidance) on
    each super-resolution U-Net.

    A super-resolution stage's low-resolution image already fixes what is drawn; guiding it only
    amplifies its own text bias, at twice the work. Guided at 3, the 64 px stage of an earlier shapes
    model repainted every orange circle on red as all red; unguided it kept the base's colours
    (benchmarks/README.md).
    """
    return (float(base),) + (1.0,) * (stages - 1)


def default_sampling(timesteps) -> dict:
    """The recommended sampling settings of a cascade whose stages have `timesteps` steps each:
    DPM-Solver++(2M) with 25 steps per stage (fewer where a stage has fewer), guidance 3 on the base
    only. On the shipped model it paints as faithfully as DDIM-50 from 8 steps on, and at 25 lands half
    as far from the converged sampling path as DDIM-25 (benchmarks/README.md)."""
    return {"sampler": "dpmpp_2m", "steps": [min(25, t) for t in timesteps],
            "cond_scale": list(default_cond_scales(len(timesteps)))}



def _config_attribute(name: str) -> property:
    """An attribute that reads and writes `self.config[name]`, so that `imagen.cond_drop_prob = 0.2`
    changes what is trained and what is saved alike: the config is the one record."""
    return property(lambda self: self.config[name], lambda self, value: self.config.__setitem__(name, value),
                    doc=f"config[{name!r}]")


class Imagen(nn.Module):
    """A text-to-image cascade.

    unets: one Unet or a sequence; the first generates, the rest super-resolve (their
        `lowres_cond` is set accordingly, and their `text_embed_dim` to the encoder's).
    image_sizes: the side of each stage's output, increasing, e.g. (32, 64).
    text_encoder_name: a name `minimagen.t5` knows ('t5_small', 'minilm', a hub id or a folder).
    timesteps, noise_schedules ('cosine'/'linear'), pred_objectives ('eps'/'x0'/'v'),
    dynamic_thresholding: one value or one per stage.
    cond_drop_prob: chance of dropping the caption in training (classifier-free guidance).
    loss_type: 'l1', 'l2' or 'huber'; min_snr_gamma: min-SNR loss weighting (None = off).
    lowres_noise_schedule: schedule of the augmentation noise; lowres_sample_noise_level: its
        level when sampling.
    auto_normalize_img: True (the default): images in and out are in [0, 1]. False: the caller
        gives and gets [-1, 1] images, the model's own range (the original MinImagen's switch).
    random_crop_sizes: None, or one side per stage (None or 0 = whole images): a super-resolution
        stage then trains on random crops of that side of its image and condition, as Imagen's did.
        Its layers are convolutions, so it still samples whole images; a crop a quarter of the
        image makes a training step three to four times cheaper. The base stage never crops: it
        learns the layout of the whole picture.
    sampling: the recommended sampling settings {"sampler", "steps", "cond_scale"} (one step count
        and one guidance scale per stage) that `sample()` uses where its caller gives none;
        default `default_sampling(timesteps)`.
    """

    def __init__(self, unets, *, image_sizes, text_encoder_name: str = t5.DEFAULT_T5_NAME,
                 text_embed_dim: int | None = None, channels: int = 3, timesteps=1000, noise_schedules="cosine",
                 pred_objectives="eps", cond_drop_prob: float = 0.1, loss_type: str = "l2",
                 min_snr_gamma: float | None = None, lowres_noise_schedule: str = "linear",
                 lowres_sample_noise_level: float = 0.2, auto_normalize_img: bool = True, dynamic_thresholding=True,
                 dynamic_thresholding_percentile: float = DYNAMIC_PERCENTILE,
                 dynamic_thresholding_max: float | None = None, only_train_unet_number: int | None = None,
                 random_crop_sizes=None, sampling: dict | None = None):
        super().__init__()
        unets = [unets] if isinstance(unets, Unet) else list(unets)
        n = len(unets)
        image_sizes = _per_stage(image_sizes, n, "image_sizes")
        if any(b <= a for a, b in zip(image_sizes, image_sizes[1:])):
            raise ValueError(f"image_sizes must increase from stage to stage, got {image_sizes}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        if not 0 <= cond_drop_prob <= 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
        if text_embed_dim is None:
            text_embed_dim = t5.get_encoded_dim(text_encoder_name)
        timesteps = _per_stage(timesteps, n, "timesteps")
        self.config = dict(
            image_sizes=image_sizes, text_encoder_name=str(text_encoder_name), text_embed_dim=text_embed_dim,
            channels=channels, timesteps=timesteps, noise_schedules=_per_stage(noise_schedules, n, "noise_schedules"),
            pred_objectives=_per_stage(pred_objectives, n, "pred_objectives"), cond_drop_prob=cond_drop_prob,
            loss_type=loss_type, min_snr_gamma=min_snr_gamma, lowres_noise_schedule=lowres_noise_schedule,
            lowres_sample_noise_level=lowres_sample_noise_level, auto_normalize_img=auto_normalize_img,
            dynamic_thresholding=_per_stage(dynamic_thresholding, n, "dynamic_thresholding"),
            dynamic_thresholding_percentile=dynamic_thresholding_percentile,
            dynamic_thresholding_max=dynamic_thresholding_max, only_train_unet_number=only_train_unet_number,
            random_crop_sizes=tuple(size or None for size in _per_stage(random_crop_sizes, n, "random_crop_sizes")),
            sampling=self._check_sampling(default_sampling(timesteps) if sampling is None else sampling, timesteps),
        )
        for objective in self.config["pred_objectives"]:
            if objective not in OBJECTIVES:
                raise ValueError(f"pred_objectives must be among {OBJECTIVES}, got {objective!r}")

        self.unets = nn.ModuleList(
            unet.cast(lowres_cond=i > 0, text_embed_dim=text_embed_dim) for i, unet in enumerate(unets)
        )
        for i, (unet, size, crop) in enumerate(zip(self.unets, image_sizes, self.config["random_crop_sizes"])):
            if size % unet.downsample_factor:
                raise ValueError(f"image_sizes[{i}] = {size} must be divisible by U-Net {i + 1}'s "
                                 f"downsampling factor {unet.downsample_factor}")
            if crop is not None and (i == 0 or not isinstance(crop, int) or not 0 < crop < size
                                     or crop % unet.downsample_factor):
                raise ValueError(f"random_crop_sizes[{i}] must be None for the base stage and, for a super-resolution "
                                 f"stage, an int below its image size {size} divisible by its downsampling factor "
                                 f"{unet.downsample_factor}; got {crop!r}")
        self.noise_schedulers = nn.ModuleList(
            GaussianDiffusion(name, steps) for name, steps in zip(self.config["noise_schedules"], timesteps)
        )
        self.lowres_noise_schedule = GaussianDiffusion(lowres_noise_schedule, 1000)
        # A buffer that follows .to(device), so the model knows where it lives.
        self.register_buffer("_device_tracker", torch.zeros(0), persistent=False)

    @staticmethod
    def _check_sampling(sampling, timesteps) -> dict:
        """The recommended sampling settings, validated: {"sampler", "steps" (per stage), "cond_scale" (per stage)}."""
        n = len(timesteps)
        if not isinstance(sampling, dict) or set(sampling) != {"sampler", "steps", "cond_scale"}:
            raise ValueError(f"sampling must be a dict with the keys sampler, steps and cond_scale, got {sampling!r}")
        if sampling["sampler"] not in SAMPLERS:
            raise ValueError(f"sampling['sampler'] must be one of {SAMPLERS}, got {sampling['sampler']!r}")
        steps = list(_per_stage(sampling["steps"], n, "sampling['steps']"))
        for t, s in zip(timesteps, steps):
            sampling_timesteps(t, s)  # ValueError unless 1 <= s <= t
        return {"sampler": sampling["sampler"], "steps": steps,
                "cond_scale": [float(s) for s in _per_stage(sampling["cond_scale"], n, "sampling['cond_scale']")]}

    image_sizes, channels = _config_attribute("image_sizes"), _config_attribute("channels")
    text_encoder_name, text_embed_dim = _config_attribute("text_encoder_name"), _config_attribute("text_embed_dim")
    cond_drop_prob, loss_type = _config_attribute("cond_drop_prob"), _config_attribute("loss_type")
    min_snr_gamma, auto_normalize_img = _config_attribute("min_snr_gamma"), _config_attribute("auto_normalize_img")
    lowres_sample_noise_level = _config_attribute("lowres_sample_noise_level")
    only_train_unet_number = _config_attribute("only_train_unet_number")

    @property
    def device(self) -> torch.device:
        return self._device_tracker.device

    # Inputs ------------------------------------------------------------------------------------

    def normalize(self, images):
        """Images as the caller gives them ([0, 1]) -> the model's [-1, 1] (unchanged if not auto_normalize_img)."""
        return normalize(images) if self.auto_normalize_img else images

    def unnormalize(self, images):
        """The model's [-1, 1] -> images as the caller gets them ([0, 1]; unchanged if not auto_normalize_img)."""
        return unnormalize(images) if self.auto_normalize_img else images

    def _unet_index(self, unet_number) -> int:
        """1-based unet_number -> 0-based index, with the original's conventions and clear errors."""
        n = len(self.unets)
        if unet_number is None:
            unet_number = self.only_train_unet_number
        if unet_number is None:
            if n > 1:
                raise ValueError(f"unet_number is required with {n} U-Nets: pass 1 (base) to {n}")
            return 0
        if isinstance(unet_number, bool) or not isinstance(unet_number, int) or not -1 < unet_number <= n:
            raise ValueError(f"unet_number must be an integer from 1 to {n}, got {unet_number!r}")
        if unet_number == 0:
            # The original README loops `unet_number=i` over range(len(unets)); its code read 0 as
            # index -1, the last U-Net. Keep that working, but say what it means.
            warnings.warn(f"unet_number is 1-based (1 = base U-Net); unet_number=0 selects the last "
                          f"U-Net ({n}), as in the original MinImagen", stacklevel=3)
            return n - 1
        return unet_number - 1

    def encode_text(self, texts, text_embeds=None, text_masks=None, batch_size=None, device=None, name="texts"):
        """Texts or precomputed embeddings -> (text_embeds (b, n, d), text_masks (b, n) bool), validated."""
        device = device or self.device
        if text_embeds is None:
            if texts is None:
                raise ValueError(f"pass {name} (a list of captions) or text_embeds")
            if isinstance(texts, str):
                texts = [texts]
            if batch_size is not None and len(texts) != batch_size:
                raise ValueError(f"{name} must hold one caption per image: got {len(texts)} captions "
                                 f"for {batch_size} images")
            text_embeds, text_masks = t5.t5_encode_text(list(texts), name=self.text_encoder_name, device=device)
        if text_embeds.ndim != 3 or text_embeds.shape[-1] != self.text_embed_dim:
            raise ValueError(f"text_embeds must be (batch, tokens, {self.text_embed_dim}), got {tuple(text_embeds.shape)}")
        if batch_size is not None and text_embeds.shape[0] != batch_size:
            raise ValueError(f"text_embeds must hold one row per image: got {text_embeds.shape[0]} for {batch_size} images")
        if text_masks is None:
            text_masks = (text_embeds != 0).any(dim=-1)  # the original's default: zero rows are padding
        if text_masks.shape != text_embeds.shape[:2]:
            raise ValueError(f"text_masks must be (batch, tokens) = {tuple(text_embeds.shape[:2])}, "
                             f"got {tuple(text_masks.shape)}")
        return text_embeds.to(device), text_masks.to(device).bool()

    def lowres_condition(self, lowres_images, size: int, noise_level, generator=None):
        """Noise conditioning augmentation.

        lowres_images: (b, c, h, w) in [-1, 1], the previous stage's image (already normalised:
            the image is enlarged first, then noised, in training and sampling alike).
        noise_level: a float or (b,) tensor in [0, 1]; 0 = no noise.
        Returns (noised image (b, c, size, size), noise levels (b,)).
        """
        upsampled = resize_image_to(lowres_images, size)
        b = upsampled.shape[0]
        levels = torch.as_tensor(noise_level, dtype=upsampled.dtype, device=upsampled.device).expand(b).clone()
        noise = torch.randn(upsampled.shape, generator=generator, device=upsampled.device, dtype=upsampled.dtype)
        return self.lowres_noise_schedule.q_sample_continuous(upsampled, levels, noise), levels

    # Training ----------------------------------------------------------------------------------

    def forward(self, images, texts=None, text_embeds=None, text_masks=None, unet_number=None, *, unet=None):
        """The training loss (a scalar) of one U-Net.

        images: (b, channels, s, s) in [0, 1], s >= that stage's image size (resized down).
        texts: b captions, or text_embeds (b, n, d) and text_masks (b, n) precomputed.
        unet_number: 1-based; optional when there is one U-Net.
        unet: the module to run for this stage instead of self.unets[unet_number - 1], e.g. that
            U-Net wrapped for distributed training (it must wrap that same U-Net).
        """
        validation.check_forward_args(locals())
        index = self._unet_index(unet_number)
        size = self.image_sizes[index]
        b, device = images.shape[0], images.device
        text_embeds, text_masks = self.encode_text(texts, text_embeds, text_masks, batch_size=b, device=device)

        unet = self.unets[index] if unet is None else unet
        diffusion = self.noise_schedulers[index]
        objective = self.config["pred_objectives"][index]
        images = self.normalize(images)
        x_start = resize_image_to(images, size)
        lowres = {}
        if index > 0:
            previous = resize_image_to(images, self.image_sizes[index - 1])
            levels = torch.rand(b, device=device)  # a random augmentation level for each image
            lowres_img, levels = self.lowres_condition(previous, size, levels)
            crop = self.config["random_crop_sizes"][index]
            if crop is not None:
                x_start, lowres_img = random_crop(crop, x_start, lowres_img)
            lowres = dict(lowres_cond_img=lowres_img, lowres_noise_times=levels)

        t = diffusion.sample_random_times(b, device=device)
        noise = torch.randn_like(x_start)
        x_t = diffusion.q_sample(x_start, t, noise)
        prediction = unet(x_t, diffusion.time_to_tau(t), text_embeds=text_embeds, text_mask=text_masks,
                          cond_drop_prob=self.cond_drop_prob, **lowres)
        target = diffusion.training_target(x_start, noise, t, objective)
        return diffusion.loss(prediction, target, t, self.loss_type, objective, self.min_snr_gamma)

    # Sampling ----------------------------------------------------------------------------------

    @contextmanager
    def _eval_mode(self):
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample(self, texts=None, text_masks=None, text_embeds=None, cond_scale=None, lowres_sample_noise_level=None,
               return_pil_images: bool = False, device=None, *, negative_texts=None, negative_text_embeds=None,
               negative_text_masks=None, seed: int | None = None, generator: torch.Generator | None = None,
               sampler: str | None = None, steps=None, eta: float = 0.0, progress: bool = True, start_at_unet: int = 1,
               stop_at_unet: int | None = None, lowres_images=None, callback=None, return_all_stages: bool = False,
               guidance_interval=None):
        """Generate images for captions.

        texts (or text_embeds/text_masks): b captions. cond_scale: guidance, one float or one per stage.
        negative_texts (or negative_text_embeds/masks): what the unconditional half is steered away from.
        seed or generator: same seed, same images. sampler: 'ddpm' (ancestral), 'ddim' or 'dpmpp_2m'
        (DPM-Solver++(2M)); steps: the number of denoising steps, one int or one per stage; eta: DDIM
        noise. cond_scale, sampler and steps left as None take the model's recommended settings,
        `self.config["sampling"]`. guidance_interval: None (guide every step) or (lo, hi): guide only at
        noise levels lo <= sqrt(1 - alphas_cumprod_t) <= hi, elsewhere one conditional pass (samplers.py).
        start_at_unet / stop_at_unet (1-based): run part of the cascade; starting above 1 needs
        lowres_images (b, c, h, w) in [0, 1], the image the first stage run should enlarge.
        callback: called after every denoising step as callback(stage, step, t, x_t, x0): stage the
            1-based U-Net number, step the 0-based step of that stage, t the time the step left,
            x_t (b, c, s, s) the noisy image the U-Net saw at t and x0 (b, c, s, s) in [-1, 1] its
            thresholded prediction of the clean image (what the step moved towards).
        Returns (b, c, s, s) in [0, 1] at stop_at_unet's size, or a list of PIL images; with
        return_all_stages, a list of those, one per stage run (each stage's own output).
        """
        validation.check_sample_args(locals())
        n = len(self.unets)
        stop_at_unet = n if stop_at_unet is None else stop_at_unet
        if isinstance(start_at_unet, bool) or not (isinstance(start_at_unet, int) and 1 <= start_at_unet <= n):
            raise ValueError(f"start_at_unet must be an integer from 1 to {n}, got {start_at_unet!r}")
        if isinstance(stop_at_unet, bool) or not (isinstance(stop_at_unet, int) and start_at_unet <= stop_at_unet <= n):
            raise ValueError(f"stop_at_unet must be an integer from start_at_unet ({start_at_unet}) to {n}, "
                             f"got {stop_at_unet!r}")
        recommended = self.config["sampling"]
        sampler = recommended["sampler"] if sampler is None else sampler
        steps = recommended["steps"] if steps is None else steps
        cond_scale = recommended["cond_scale"] if cond_scale is None else cond_scale
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if start_at_unet > 1 and lowres_images is None:
            raise ValueError(f"start_at_unet={start_at_unet} needs lowres_images: (batch, {self.channels}, h, w) "
                             "in [0, 1], the image to enlarge")
        if isinstance(cond_scale, (tuple, list)) and len(cond_scale) == 1:  # '--cond-scale 3': every stage
            cond_scale = cond_scale[0]
        cond_scales = _per_stage(cond_scale, n, "cond_scale")
        steps = _per_stage(steps, n, "steps")
        guidance_interval = check_guidance_interval(guidance_interval)
        noise_level = self.lowres_sample_noise_level if lowres_sample_noise_level is None else lowres_sample_noise_level
        if device is not None and torch.device(device) != self.device:
            self.to(device)  # as the original did: sample where the caller asks
        device = self.device
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)

        text_embeds, text_masks = self.encode_text(texts, text_embeds, text_masks, device=device)
        b = text_embeds.shape[0]
        negative = {}
        if negative_texts is not None or negative_text_embeds is not None:
            if isinstance(negative_texts, str):
                negative_texts = [negative_texts] * b
            neg_embeds, neg_masks = self.encode_text(negative_texts, negative_text_embeds, negative_text_masks,
                                                     batch_size=b, device=device, name="negative_texts")
            negative = dict(negative_text_embeds=neg_embeds, negative_text_mask=neg_masks)

        images = None
        if lowres_images is not None:
            if lowres_images.ndim != 4 or lowres_images.shape[0] != b or lowres_images.shape[1] != self.channels:
                raise ValueError(f"lowres_images must be ({b}, {self.channels}, h, w) in [0, 1], "
                                 f"got {tuple(lowres_images.shape)}")
            images = self.normalize(lowres_images.to(device).float())

        outputs = []
        with self._eval_mode():
            for index in range(start_at_unet - 1, stop_at_unet):
                images = self._sample_stage(index, images, text_embeds, text_masks, negative, cond_scales[index],
                                            noise_level, generator, sampler, steps[index], eta, progress, callback,
                                            guidance_interval)
                outputs.append(self.unnormalize(images.clamp(-1.0, 1.0)))
        if return_pil_images:
            outputs = [to_pil(stage) for stage in outputs]
        return outputs if return_all_stages else outputs[-1]

    def _sample_stage(self, index, previous, text_embeds, text_masks, negative, cond_scale, noise_level,
                      generator, sampler, steps, eta, progress, callback, guidance_interval=None):
        """Run one U-Net's reverse process. previous: (b, c, h, w) in [-1, 1] or None. Returns [-1, 1] images."""
        unet, diffusion, size = self.unets[index], self.noise_schedulers[index], self.image_sizes[index]
        b, device = text_embeds.shape[0], text_embeds.device
        randn = lambda: torch.randn((b, self.channels, size, size), generator=generator, device=device)
        lowres = {}
        if index > 0:
            lowres_img, levels = self.lowres_condition(previous, size, noise_level, generator)
            lowres = dict(lowres_cond_img=lowres_img, lowres_noise_times=levels)
        objective, dynamic = self.config["pred_objectives"][index], self.config["dynamic_thresholding"][index]

        def denoise(x, t):  # x_t -> x0 (b, c, s, s) in [-1, 1]: guided (inside the interval), thresholded
            t_batch = torch.full((b,), t, device=device, dtype=torch.long)
            scale = guidance_at(cond_scale, diffusion.alphas_cumprod[t], guidance_interval)
            output = unet.forward_with_cond_scale(x, diffusion.time_to_tau(t_batch), cond_scale=scale, text_embeds=text_embeds,
                                                  text_mask=text_masks, **(negative if scale != 1 else {}), **lowres)
            x0 = diffusion.model_output_to_start(output, x, t_batch, objective)
            return (dynamic_threshold(x0, self.config["dynamic_thresholding_percentile"],
                                      self.config["dynamic_thresholding_max"]) if dynamic else static_threshold(x0))

        plan = tqdm(sampling_timesteps(diffusion.timesteps, steps), desc=f"U-Net {index + 1}/{len(self.unets)} ({size}px)",
                    disable=not progress, leave=False)
        step_callback = None if callback is None else (
            lambda step, t, x_t, x0: callback(stage=index + 1, step=step, t=t, x_t=x_t, x0=x0))
        return sample_loop(randn(), denoise, diffusion.alphas_cumprod, plan, sampler, eta, randn, step_callback)

    # Save and load -----------------------------------------------------------------------------

    def model_config(self) -> dict:
        """Everything needed to rebuild this cascade, as config.json holds it (see minimagen.checkpoint)."""
        as_json = lambda config: {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
        return {"format": "minimagen", "format_version": FORMAT_VERSION, "imagen": as_json(self.config),
                "unets": [as_json(unet.config) for unet in self.unets]}

    @classmethod
    def from_config(cls, config: dict, source="config") -> "Imagen":
        """A cascade with fresh weights from a config written by model_config."""
        check_model_config(config, source)
        takes = inspect.signature(Unet).parameters  # checkpoint.py imports no model, so U-Net keys are checked here
        for i, unknown in enumerate(sorted(set(u) - set(takes)) for u in config["unets"]):
            if unknown:
                raise CheckpointError(f'{source}: "unets"[{i}] key {unknown[0]!r} must be one of {", ".join(takes)}')
        return cls([Unet(**u) for u in config["unets"]], **config["imagen"])

    def save_pretrained(self, directory, dtype: torch.dtype | None = None) -> None:
        """Write config.json and model.safetensors into `directory` (weights cast to `dtype` if given)."""
        state = self.state_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_model_folder(directory, self.model_config(), state)

    @classmethod
    def from_pretrained(cls, directory, device=None) -> "Imagen":
        """Load a model written by save_pretrained (float32, on `device`, in eval mode)."""
        device = validation.check_device(device) if device is not None else None  # before reading the weights
        config, state = load_model_folder(directory)
        imagen = cls.from_config(config, source=str(Path(directory) / CONFIG_NAME))
        load_weights(imagen, state, source=str(Path(directory) / WEIGHTS_NAME))
        return imagen.to(device or "cpu").eval()
