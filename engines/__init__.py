"""Running compiled models: one Engine interface over TensorRT, ONNX Runtime and PyTorch backends,
engine manifests, ensembles and MC-dropout sampling. Knows nothing about video or ZeroMQ."""
