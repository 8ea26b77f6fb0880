"""Segmentation side of ``train``: member configs and presets, data (samples, augmentation,
balanced sampler), the training loop, metrics, ensemble/MC-dropout inference, evaluation panels
and ONNX export (Roy et al. 2020, §IV-C, §V-C)."""
