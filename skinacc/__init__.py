"""skinacc: train skin-disease image classifiers at multi-GPU scale with Accelerate, timm and datasets."""

__version__ = "0.1.0"
