"""Benchmark harness (issue #8): how fast a config's training step runs, and what bounds it.

  python -m jaxssl.bench --torch --out=bench.json   # the issue's table, with the PyTorch twins
  python -m jaxssl.bench --rows=defaults            # every config's CPU default (pipeline / step)
  python -m jaxssl.bench --rows=mae_vit_tiny,mmv_default --steps=10 --warmup=2
  python -m jaxssl.bench --rows=mae_vit_b16 --set=model.scan_layers=True   # before/after

A row (ROWS) is a config file[:variant], overrides of its keys and a global batch size. Its
method, optimizer, state and step are built by the functions training uses (`sources.get_source`,
`methods.build`, `optim.make_optimizer`, `train.create_state`, `train.make_train_step` on
`sharding.make_mesh`), and measured:

  step_ms               median wall time of a step after warm-up (`jax.block_until_ready`), on one
                        fixed batch from the pipeline, so that loading cannot bound it (warm-up
                        steps take fresh batches, as training does)
  examples_per_s        batch_size / step time
  flops_per_step        XLA's cost analysis of the compiled step (augmentation, forward, backward,
                        optimizer update); of a loop-free twin where the step has loops (the
                        analysis counts a loop body once): model.scan_layers off, XLA attention
  utilisation           achieved FLOP/s / peak FLOP/s; the peak is a large matmul in the compute
                        dtype timed in the same run (float32 on CPU; bfloat16 on accelerators: MFU)
  compile_s             tracing, lowering and XLA compilation of the step (no persistent cache)
  init_compile_s        the same for the state's initialisation (`create_state`'s jitted init)
  compilations          compilations of the step over the row (`count_compilations`): 1 unless
                        a call, warm-up on fresh batches included, had to compile it again
  peak_memory_bytes     the device's peak_bytes_in_use, or the process's max RSS where the device
                        does not report it (CPU: host memory of the whole process, data included)
  pipeline_examples_per_s  the host input pipeline alone (`jaxssl.data.pipeline`'s iterator, no
                        model); pipeline_over_step = that / examples_per_s

--torch adds the PyTorch twins of TORCH_ROWS (benchmarks/pytorch_steps.py: eager PyTorch, same
model, batch and loss) with jax_over_pytorch, the ratio of the two throughputs. When several rows
are asked for, each runs in its own process, so that its compile time and memory are its own.
--rounds=N measures each row (and its twin) N times, alternating, each in its own process: the
row reported is the round of median throughput, with every round's examples_per_s and the
jax_over_pytorch of each round (both frameworks measured minutes apart, not N rows apart) beside
it. On a shared VM whose speed drifts by tens of percent within minutes, that range is the
honest figure.
"""
import ast
import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Row:
  config: str  # configs/<name>.py[:variant], relative to the repository
  overrides: dict = dataclasses.field(default_factory=dict)  # dotted config keys -> values
  batch_size: int | None = None  # global; None keeps the config's


# The ResNet-18 of SimCLR's CIFAR-10 experiments: 3x3 stride-1 stem, no max-pool, 32x32 inputs.
_R18 = {"model.depth": 18, "model.width": 64, "model.stem": "cifar", "data.image_size": 32}
# MAE's ImageNet geometry with the ViT-Tiny encoder and the paper's 8-block, 512-wide decoder.
_MAE_TINY = {"model.variant": "tiny/16", "data.image_size": 224, "mae.decoder_width": 512,
             "mae.decoder_depth": 8, "mae.decoder_heads": 16, "mae.mask_ratio": 0.75,
             "mae.norm_pix": True}

# Every pretraining config's CPU default as it trains (configs/finetune.py is not pretraining).
DEFAULT_ROWS = {
    f"{name}_default": Row(f"configs/{name}.py")
    for name in sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(REPO, "configs"))
                       if f.endswith(".py") and f not in ("__init__.py", "finetune.py"))}
# The issue's table: the papers' models, with batches small enough for steps of about 10 s on a
# 2-core CPU, and the default MMV run.
TABLE_ROWS = ("simclr_r18", "byol_r18", "mae_vit_tiny", "mae_vit_b16", "mmv_default")
ROWS = {
    "quick": Row("configs/simclr.py:quick"),  # seconds; the smoke test's row
    "simclr_r18": Row("configs/simclr.py", _R18, 32),
    "byol_r18": Row("configs/byol.py", _R18, 32),
    "mae_vit_tiny": Row("configs/mae.py", _MAE_TINY, 16),
    "mae_vit_b16": Row("configs/mae.py", {**_MAE_TINY, "model.variant": "base/16"}, 8),
    **DEFAULT_ROWS,
}
# Rows with a twin of the same name in benchmarks/pytorch_steps.py.
TORCH_ROWS = ("simclr_r18", "mae_vit_tiny")
TORCH_SCRIPT = os.path.join("benchmarks", "pytorch_steps.py")
# Names --rows also takes for several rows at once.
GROUPS = {"table": TABLE_ROWS, "defaults": tuple(DEFAULT_ROWS),
          "all": tuple(name for name in ROWS if name != "quick")}

_ROWS = flags.DEFINE_list("rows", ["table"], f"Rows to measure, of: {', '.join(ROWS)}; or "
                          f"the groups {', '.join(GROUPS)}.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per row, on one fixed batch (the median "
                             "is reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation, on fresh batches.")
_OUT = flags.DEFINE_string("out", None, "Also write the rows to this file, as a JSON list.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Measurements of each row (and of its PyTorch twin), "
                               "alternating, each in its own process; the median is reported.")
_TORCH = flags.DEFINE_bool("torch", False, f"Add the PyTorch twins of {', '.join(TORCH_ROWS)}.")
_DTYPE = flags.DEFINE_enum("compute_dtype", "auto", ["auto", "float32", "bfloat16"],
                           "Compute dtype of every row and of the peak matmul; auto: float32 on "
                           "CPU, bfloat16 on accelerators.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s for the utilisation; 0 measures it.")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE config override applied to every row, "
                                 "VALUE a Python literal (e.g. --set=model.scan_layers=True): an "
                                 "optimisation measured before and after.")


def parse_overrides(assignments):
  """{"model.scan_layers": True} from ["model.scan_layers=True"]; a bare word stays a string."""
  out = {}
  for assignment in assignments:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
      raise app.UsageError(f"--set wants KEY=VALUE, got {assignment!r}")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def load_config(row, compute_dtype):
  """The row's locked config with its overrides, compute dtype and batch size applied."""
  path, _, variant = row.config.partition(":")
  if REPO not in sys.path:  # Configs import each other as the `configs` package.
    sys.path.insert(0, REPO)
  module = importlib.import_module("configs." + os.path.splitext(os.path.basename(path))[0])
  config = module.get_config(variant)
  config.lock()  # A misspelt override fails here, naming the key.
  config.update_from_flattened_dict({**row.overrides, "compute_dtype": compute_dtype})
  if row.batch_size:
    config.batch_size = row.batch_size
  return config


@contextlib.contextmanager
def count_compilations():
  """Counter of compilations per jitted function name (e.g. "jit(train_step)") while open.

  Counts lowerings to XLA: every executable a jitted function needs is lowered once, whether
  XLA then compiles it or the persistent compilation cache has it; a call that reuses one is not
  counted."""
  import jax
  counts = collections.Counter()

  def listener(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      counts[kwargs.get("fun_name")] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def peak_flops(dtype):
  """FLOP/s of the best of 5 large square matmuls in `dtype` on the first device."""
  import jax
  import jax.numpy as jnp
  size = 2048 if jax.default_backend() == "cpu" else 8192
  a, b = (jax.random.normal(k, (size, size), dtype) for k in jax.random.split(jax.random.key(0)))
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))
  return 2 * size**3 / min(_timed(lambda: matmul(a, b)) for _ in range(5))


def _timed(fn):
  import jax
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def _flops(cost_analysis):
  """FLOPs from `Compiled.cost_analysis()`: a dict, a list of one dict per module, or None."""
  if isinstance(cost_analysis, (list, tuple)):
    cost_analysis = cost_analysis[0] if cost_analysis else None
  flops = (cost_analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def _peak_memory():
  import jax
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device"
  # ru_maxrss is in KiB on Linux (bytes on macOS).
  scale = 1 if sys.platform == "darwin" else 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "host max RSS"


def _pipeline_rate(iterator, batch_size, min_batches=5, min_seconds=2.0):
  """Global examples/s of the host input pipeline alone: `iterator` drawn as fast as it goes."""
  # Untimed: the start-up (workers, first batch) and the prefetch buffer (2 batches), which
  # timed draws would otherwise empty at no cost.
  for _ in range(3):
    next(iterator)
  count, start = 0, time.perf_counter()
  while count < min_batches or time.perf_counter() - start < min_seconds:
    next(iterator)
    count += 1
  # Each process loads its slice of every global batch, all in parallel.
  return count * batch_size / (time.perf_counter() - start)


def measure(name, row, steps, warmup, compute_dtype, peak):
  """One JAX row: the dict described in the module docstring."""
  import jax
  from jaxssl import config_base, methods, optim, sharding, train
  from jaxssl.data import pipeline, sources
  config = load_config(row, compute_dtype)
  config_base.validate(config, jax.device_count(), jax.process_count())
  mesh = sharding.make_mesh(config.mesh)
  source = sources.get_source(config.dataset, "train", config.data)
  dataset = pipeline.train_dataset(
      source, global_batch=config.batch_size, seed=config.seed,
      image_size=config.data.image_size, process_index=jax.process_index(),
      process_count=jax.process_count(), bad_records=config.data.bad_records)
  iterator = pipeline.train_iterator(dataset, num_workers=config.data.num_workers)
  with jax.set_mesh(mesh), count_compilations() as compilations:
    try:
      pipeline_rate = _pipeline_rate(iterator, config.batch_size)
      batches = train.device_batches(iterator, mesh, {"bad_records": 0})
      _, batch = next(batches)
      method = methods.build(config, methods.DataInfo(config.data.image_size,
                                                      source.num_classes))
      tx, schedule = optim.make_optimizer(config.optimizer, config.batch_size,
                                          config.total_steps)
      init_fn, abstract_state, state_sh = train.create_state(method, tx, mesh, config.seed)
      start = time.perf_counter()
      init_fn.lower(jax.random.key(config.seed)).compile()
      init_compile_s = time.perf_counter() - start
      state = init_fn(jax.random.key(config.seed))
      train_step = train.make_train_step(method, tx, schedule, state_sh, mesh, config.seed)
      start = time.perf_counter()
      compiled = train_step.lower(state, batch).compile()
      compile_s = time.perf_counter() - start
      # Warm-up on fresh batches, fed as the training loop feeds them, so that `compilations`
      # also catches a recompile that the data would trigger (another shape or dtype).
      for _ in range(warmup):
        state, _ = train_step(state, next(batches)[1])
      jax.block_until_ready(state)
    finally:
      iterator.close()
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      state, metrics = train_step(state, batch)  # The jitted step: it reuses `compiled`.
      jax.block_until_ready((state, metrics))
      times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  flops = _flops(compiled.cost_analysis())
  memory, memory_source = _peak_memory()  # Before the unrolled compilation below adds to it.
  if "while" in compiled.as_text():
    # XLA's cost analysis counts a loop's body once, not once per iteration: take the FLOPs of
    # the same step without the loops this code adds, blocks unrolled (model.scan_layers) and
    # XLA's attention (CPU loops over examples: jaxssl.models.attention), compiled from shapes
    # only, never run.
    from jaxssl import aot
    from jaxssl.models import attention
    unrolled = dataclasses.replace(row, overrides={**row.overrides, "model.scan_layers": False})
    unrolled = load_config(unrolled if "model" in config and "scan_layers" in config.model
                           else row, compute_dtype)
    with jax.set_mesh(mesh), attention.xla_everywhere():
      report = aot.compile_train_step(unrolled, mesh)[1]
    flops = report["flops_per_device"]  # Per device, as the compiled step's own analysis.
  examples_per_s = config.batch_size / step_s
  return dict(
      name=name, config=row.config, overrides=row.overrides, framework="jax",
      device=f"{jax.device_count()}x {jax.devices()[0].device_kind}",
      compute_dtype=compute_dtype, batch_size=config.batch_size,
      params=sum(x.size for x in jax.tree.leaves(abstract_state["params"])),
      step_ms=1e3 * step_s, step_ms_min=1e3 * min(times), step_ms_max=1e3 * max(times),
      examples_per_s=examples_per_s, flops_per_step=flops, flops_per_s=flops and flops / step_s,
      peak_flops_per_s=peak, utilisation=flops and flops / step_s / peak, compile_s=compile_s,
      init_compile_s=init_compile_s, compilations=compilations["jit(train_step)"],
      peak_memory_bytes=memory, memory_source=memory_source,
      pipeline_examples_per_s=pipeline_rate,
      pipeline_over_step=pipeline_rate / examples_per_s)


def _run_child(args):
  """The row a `python -m jaxssl.bench` / pytorch_steps.py subprocess writes, or why it failed."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "rows.json")
    proc = subprocess.run([sys.executable, *args, f"--out={out}"], cwd=REPO, check=False)
    if proc.returncode:
      return {"skipped": f"failed (exit code {proc.returncode})"}
    with open(out) as f:
      return json.load(f)[0]


def _skip_reason(row):
  path = row.config.partition(":")[0]
  return None if os.path.exists(os.path.join(REPO, path)) else f"skipped ({path} missing)"


def _torch_row(name, jax_row, steps, warmup):
  if importlib.util.find_spec("torch") is None:
    return dict(name=name, framework="pytorch",
                skipped="skipped (no torch: pip install -e '.[bench]')")
  row = _run_child([TORCH_SCRIPT, f"--model={name}", f"--batch_size={jax_row['batch_size']}",
                    f"--steps={steps}", f"--warmup={warmup}"])
  row.update(name=name, framework="pytorch")
  if "examples_per_s" in row:
    row["jax_over_pytorch"] = jax_row["examples_per_s"] / row["examples_per_s"]
  return row


def median_round(rounds):
  """One row from several measurements of it: the round of median examples_per_s (the lower
  middle one of an even number), with every round's examples_per_s in `rounds_examples_per_s`.
  A PyTorch twin's jax_over_pytorch becomes the median of the rounds' own ratios (each a JAX
  row and the twin measured right after it), listed in `rounds_jax_over_pytorch`. A round that
  was skipped fails them all."""
  if len(rounds) == 1 or any("skipped" in r for r in rounds):
    return next((r for r in rounds if "skipped" in r), rounds[0])
  ordered = sorted(rounds, key=lambda r: r["examples_per_s"])
  row = dict(ordered[(len(ordered) - 1) // 2], rounds_examples_per_s=[
      r["examples_per_s"] for r in rounds])
  if all("jax_over_pytorch" in r for r in rounds):
    row["rounds_jax_over_pytorch"] = [r["jax_over_pytorch"] for r in rounds]
    row["jax_over_pytorch"] = statistics.median(row["rounds_jax_over_pytorch"])
  return row


# (header, key, format[, scale]) of the Markdown table; a missing or None value prints as "-".
_COLUMNS = (
    ("row", "name", "{}"), ("framework", "framework", "{}"), ("batch", "batch_size", "{}"),
    ("step ms", "step_ms", "{:.1f}"), ("examples/s", "examples_per_s", "{:.1f}"),
    ("GFLOP/step", "flops_per_step", "{:.3g}", 1e-9), ("GFLOP/s", "flops_per_s", "{:.1f}", 1e-9),
    ("utilisation", "utilisation", "{:.1%}"), ("compile s", "compile_s", "{:.1f}"),
    ("init compile s", "init_compile_s", "{:.1f}"),
    ("peak memory GB", "peak_memory_bytes", "{:.2f}", 1e-9),
    ("pipeline examples/s", "pipeline_examples_per_s", "{:.0f}"),
    ("pipeline / step", "pipeline_over_step", "{:.1f}x"),
    ("jax / pytorch", "jax_over_pytorch", "{:.2f}"),
)


def markdown_table(rows, columns=_COLUMNS):
  """The rows under `columns`: (header, key, format[, scale]) each."""
  lines = ["| " + " | ".join(c[0] for c in columns) + " |",
           "|" + " --- |" * len(columns)]
  for row in rows:
    if "skipped" in row:
      cells = [row["name"], row.get("framework", "jax"), row["skipped"]]
      cells += [""] * (len(columns) - len(cells))
    else:
      cells = []
      for _, key, fmt, *scale in columns:
        value = row.get(key)
        cells.append("-" if value is None else fmt.format(value * scale[0] if scale else value))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  names = list(dict.fromkeys(n for name in _ROWS.value for n in GROUPS.get(name, (name,))))
  unknown = [name for name in names if name not in ROWS]
  if unknown:
    raise app.UsageError(f"unknown row(s) {unknown}; rows: {', '.join(ROWS)}; groups: "
                         f"{', '.join(GROUPS)}")
  if _STEPS.value < 1 or _WARMUP.value < 0 or _ROUNDS.value < 1:
    raise app.UsageError("--steps and --rounds must be at least 1 and --warmup at least 0")
  logging.set_verbosity(logging.WARNING)  # Before jax starts: no "Unable to initialize backend".
  import jax
  # Compile times are measured, not loaded from a persistent cache that an earlier run filled.
  jax.config.update("jax_enable_compilation_cache", False)
  dtype = _DTYPE.value
  if dtype == "auto":
    dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  peak = _PEAK.value
  if not peak:
    peak = peak_flops(dtype)
    print(f"[bench] peak {peak / 1e9:.1f} GFLOP/s ({dtype} matmul on {jax.devices()[0]})",
          flush=True)
  extra = parse_overrides(_SET.value)
  results = []
  for name in names:
    row, reason = ROWS[name], _skip_reason(ROWS[name])
    row = dataclasses.replace(row, overrides={**row.overrides, **extra})
    jax_rounds, torch_rounds = [], []
    for _ in range(_ROUNDS.value):
      if reason:
        result = dict(name=name, config=row.config, framework="jax", skipped=reason)
      elif len(names) == 1 and _ROUNDS.value == 1:
        result = measure(name, row, _STEPS.value, _WARMUP.value, dtype, peak)
      else:
        result = _run_child(["-m", "jaxssl.bench", f"--rows={name}", f"--steps={_STEPS.value}",
                             f"--warmup={_WARMUP.value}", f"--compute_dtype={dtype}",
                             f"--peak_flops={peak}", *(f"--set={a}" for a in _SET.value)])
        result.setdefault("name", name)
      jax_rounds.append(result)
      if _TORCH.value and name in TORCH_ROWS and "skipped" not in result:
        torch_rounds.append(_torch_row(name, result, _STEPS.value, _WARMUP.value))
    results += [median_round(r) for r in (jax_rounds, torch_rounds) if r]
  print(markdown_table(results), flush=True)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
