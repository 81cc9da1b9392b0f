"""MinImagen: a minimal, readable Imagen (cascaded text-to-image diffusion).

The seed's public API lives in submodules, as in the original MinImagen:
    from minimagen.Imagen import Imagen
    from minimagen.Unet import Unet, Base, Super
    from minimagen.t5 import t5_encode_text, get_encoded_dim
"""

__version__ = "0.1.0"
