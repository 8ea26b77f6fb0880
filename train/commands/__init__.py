"""Sub-commands of ``lus-train`` (one module each, see ``train.cli``)."""
