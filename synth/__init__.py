"""Synthetic lung-ultrasound simulator (numpy + OpenCV only).

Owned by the training side, but kept in its own torch-free package so that the runtime's
synthetic live source (``lus-stream --demo``) can use it without importing ``train``.
"""
