"""retinalight: reproducible retinal vessel segmentation experiments (SA-UNet, Retina-GAN) on PyTorch Lightning."""

__version__ = "0.1.0"
