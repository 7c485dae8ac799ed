"""Data layer: `sources` (datasets behind one record interface), `shapes` (the procedural
dataset) and `pipeline` (step-indexed, process-count-independent training batches)."""
