"""Training side: models (Reg-STN, uninorm aggregator, segmentation nets), losses, datasets in the
ICLUS-DB layout, training loops, metrics and ONNX export. Never imported by ``stream``."""
