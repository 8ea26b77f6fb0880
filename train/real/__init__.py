"""Frame models from real clips with clip-level scores only (weak supervision).

``cache`` decodes every clip once into model-sized frames; ``heads`` holds the clip poolings (the
uninorm layer trained end to end, mean of logits) and the frame-inherits-clip-score baseline;
``loop`` trains one model; ``metrics`` scores clips; ``crossval`` runs the patient-level protocol.
"""
