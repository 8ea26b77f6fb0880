"""Clip aggregation training (Roy et al. 2020 §IV-B, §V-B): reading frame probabilities, patient-level
folds, training the uninorm layer, the baselines, Table II/III metrics and the aggregator manifest."""
