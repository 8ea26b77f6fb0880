"""The lus-stream runtime: capture, preprocessing, inference lanes, streaming aggregation,
publishing, control and recording. Never imports torch or ``train``."""
