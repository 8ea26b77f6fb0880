"""Data-only package ``lus_stream_models``: the models shipped with lus-stream (installed from ``models/``).

Nothing to import; :func:`stream.default_models.models_root` finds this folder. Each model's manifest
(``*.json``) says what it is, what it was trained on and under which licence; see the ``MODEL_CARD.md``
files.
"""
