"""Data layer: `sources` (datasets behind one record interface), `shapes` and `avshapes` (the
procedural image and video-audio-text datasets), `av_records` + `convert` (real clips as
ArrayRecord) and `pipeline` (step-indexed, process-count-independent training batches)."""


class CorruptRecord(ValueError):
  """A record that cannot be decoded or has the wrong shape. Sources raise it from
  `__getitem__`/`get_batch`; the pipeline skips and counts such records or stops, per
  config.data.bad_records."""

  def __init__(self, source, index, reason):
    super().__init__(f"record {index} of {source} is corrupt: {reason}")
    self.index = index
