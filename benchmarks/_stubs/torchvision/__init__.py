"""A stand-in for torchvision, used ONLY by benchmarks/ when running the original MinImagen 0.0.9.

PyPI's torchvision does not import beside the CPU torch 2.13 wheel ("operator torchvision::nms
does not exist"), and the original imports it only to turn tensors into PIL images:
    minimagen/Imagen.py:    import torchvision.transforms as T   (uses T.ToPILImage())
    minimagen/training.py:  from torchvision.transforms import Compose, ToTensor
This folder is put on sys.path only inside the benchmark's subprocess for the original; none of
these names is on any timed path.
"""
