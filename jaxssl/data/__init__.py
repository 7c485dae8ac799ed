"""Data layer: `sources` (datasets behind one record interface), `shapes` and `avshapes` (the
procedural image and video-audio-text datasets), `av_records` + `convert` (real clips as
ArrayRecord) and `pipeline` (step-indexed, process-count-independent training batches)."""
