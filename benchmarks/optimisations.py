"""Before/after figures of the step optimisations that no config key switches (issue #8).

  python benchmarks/optimisations.py --row=simclr_r18 [--steps=10 --warmup=2 --out=FILE]

(--steps: timed steps or batches per measurement; --warmup: untimed steps before each loop.)

For one `jaxssl.bench` row, in this process, each optimisation is measured with and without it:

  donation      the train state donated to the step (`train.make_train_step`'s default) or not:
                XLA's memory analysis of the compiled step (arguments + outputs - aliased +
                temporaries, per device) and the median step time on one fixed batch.
  prefetch      the training loop's feed (`train.device_batches`: the next batch is loaded and
                sent to the devices while the step runs) against loading each batch only after
                the previous step has finished: examples/s of `--steps` steps fed from the
                pipeline, as training runs them.
  augmentation  (two-view image rows: SimCLR, BYOL) the views made on the device, batched inside
                the step (`augment.simclr_views`), against the same augmentation made per image,
                as a host data-loader worker makes it (`augment.simclr_view` compiled for one
                image, one call per image and view): milliseconds per batch of each.

The other optimisations are config keys or bench flags, measured with `python -m jaxssl.bench`:
bf16 (`--compute_dtype`), remat and scan-over-layers (`--set=model.remat=True`,
`--set=model.scan_layers=True`). Prints a Markdown table; `--out` also writes it as JSON.
"""
import functools
import json
import statistics
import time

from absl import app, flags, logging

from jaxssl import bench  # Its flags --steps, --warmup and --out are this script's too.

_ROW = flags.DEFINE_string("row", "simclr_r18", f"A row of `jaxssl.bench`: {', '.join(bench.ROWS)}.")
FLAGS = flags.FLAGS


def _median_ms(fn, repeats):
  import jax
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def _memory_bytes(compiled):
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


class _Setup:
  """The row's config, mesh, pipeline, method, optimizer and state, built as training builds
  them (the same calls as `jaxssl.bench.measure`)."""

  def __init__(self, row_name):
    import jax
    from jaxssl import config_base, methods, optim, sharding, train
    from jaxssl.data import sources
    self.config = c = bench.load_config(bench.ROWS[row_name], "float32")
    config_base.validate(c, jax.device_count(), jax.process_count())
    self.mesh = sharding.make_mesh(c.mesh)
    self.source = sources.get_source(c.dataset, "train", c.data)
    self.method = methods.build(c, methods.DataInfo(c.data.image_size, self.source.num_classes))
    self.tx, self.schedule = optim.make_optimizer(c.optimizer, c.batch_size, c.total_steps)
    self.init_fn, _, self.state_sh = train.create_state(self.method, self.tx, self.mesh, c.seed)

  def iterator(self):
    import jax
    from jaxssl.data import pipeline
    c = self.config
    dataset = pipeline.train_dataset(
        self.source, global_batch=c.batch_size, seed=c.seed, image_size=c.data.image_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
        bad_records=c.data.bad_records)
    return pipeline.train_iterator(dataset, num_workers=c.data.num_workers)

  def state(self):
    import jax
    return self.init_fn(jax.random.key(self.config.seed))

  def step(self, donate=True):
    from jaxssl import train
    return train.make_train_step(self.method, self.tx, self.schedule, self.state_sh, self.mesh,
                                 self.config.seed, donate=donate)


def donation(s, batch, steps):
  rows = []
  for donate in (True, False):
    step = s.step(donate)
    state = s.state()
    compiled = step.lower(state, batch).compile()

    def run():
      nonlocal state
      state, metrics = step(state, batch)
      return state, metrics

    for _ in range(2):
      run()
    rows.append(dict(optimisation="donation", setting="on" if donate else "off",
                     memory_bytes=_memory_bytes(compiled), step_ms=_median_ms(run, steps)))
  return rows


def _synchronous_batches(iterator, mesh):
  """The feed without prefetch: each batch is loaded and sent only when the loop asks."""
  import jax
  from jaxssl import sharding
  while True:
    local = next(iterator)
    local.pop("bad_records")
    yield None, {k: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, v.ndim),
                                                           v) for k, v in local.items()}


def prefetch(s, steps, warmup):
  import jax
  from jaxssl import train
  rows = []
  step = s.step()
  for on in (True, False):
    iterator = s.iterator()
    feed = (train.device_batches(iterator, s.mesh, {"bad_records": 0}) if on
            else _synchronous_batches(iterator, s.mesh))
    state = s.state()
    try:
      for _ in range(warmup + 1):
        state, metrics = step(state, next(feed)[1])
      jax.block_until_ready(metrics)
      start = time.perf_counter()
      for _ in range(steps):
        state, metrics = step(state, next(feed)[1])
        # The loop's own sync point: training reads metrics every log_every steps; here every
        # step, so the device never runs ahead of the host by more than one step either way.
        jax.block_until_ready(metrics)
      seconds = time.perf_counter() - start
    finally:
      iterator.close()
    rows.append(dict(optimisation="prefetch", setting="on" if on else "off",
                     examples_per_s=steps * s.config.batch_size / seconds))
  return rows


def augmentation(s, batch, steps):
  import jax
  from jaxssl import augment
  c = s.config
  views = [c.augment.view1, c.augment.view2]
  images = batch["image"]
  on_device = jax.jit(functools.partial(augment.simclr_views, out_size=c.data.image_size,
                                        cfg_list=views))
  one = [jax.jit(functools.partial(augment.simclr_view, out_size=c.data.image_size, cfg=v))
         for v in views]
  keys = jax.random.split(jax.random.key(0), images.shape[0])
  host_images = list(jax.device_get(images))

  def per_image():
    return [f(k, x[None]) for k, x in zip(keys, host_images) for f in one]

  jax.block_until_ready((on_device(keys[0], images), per_image()))
  return [dict(optimisation="augmentation", setting="on device, batched",
               augment_ms=_median_ms(lambda: on_device(keys[0], images), steps)),
          dict(optimisation="augmentation", setting="per image (host worker)",
               augment_ms=_median_ms(per_image, max(1, steps // 5)))]


_COLUMNS = (("row", "row", "{}"), ("batch", "batch_size", "{}"),
            ("optimisation", "optimisation", "{}"), ("setting", "setting", "{}"),
            ("step ms", "step_ms", "{:.1f}"), ("memory MB", "memory_bytes", "{:.1f}", 1e-6),
            ("loop examples/s", "examples_per_s", "{:.1f}"), ("augment ms", "augment_ms", "{:.1f}"))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import jax
  from jaxssl import train
  s = _Setup(_ROW.value)
  iterator = s.iterator()
  with jax.set_mesh(s.mesh):
    try:
      _, batch = next(train.device_batches(iterator, s.mesh, {"bad_records": 0}))
    finally:
      iterator.close()
    rows = donation(s, batch, FLAGS.steps) + prefetch(s, FLAGS.steps, FLAGS.warmup)
    if "view1" in s.config.get("augment", {}):
      rows += augmentation(s, batch, FLAGS.steps)
  for row in rows:
    row.update(row=_ROW.value, batch_size=s.config.batch_size,
               device=f"{jax.device_count()}x {jax.devices()[0].device_kind}")
  print(bench.markdown_table(rows, _COLUMNS), flush=True)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
