"""The training loop shared by every method.

Nothing here knows a method or an evaluator: it asks `config.method`'s module to init variables
and compute the loss of a global batch, and `config.eval.name`'s evaluator to score the model.
The step is one `jax.jit` with the state donated and every input/output laid out by
`NamedSharding`s over the mesh. Determinism: the batch
at step s is a function of (data seed, s) and the step's RNG is fold_in(seed, s), so a resumed run
repeats an uninterrupted one exactly.
"""
import collections
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from jaxssl import (checkpoint, config_base, evaluators, methods, optim, pretrained, reporting,
                    sharding)
from jaxssl import workdir as workdir_lib
from jaxssl.data import pipeline, sources


class Preempted(SystemExit):
  """Raised after a SIGTERM once the checkpoint is written; exit code 143 (= 128 + SIGTERM)."""


def device_batches(iterator, mesh, counts):
  """Yields (iterator state just after this batch, global batch), with the next batch already in
  flight to the devices so host loading and the device step overlap. The state is the one a
  checkpoint taken after training on this batch must hold: it points at the following batch.
  counts["bad_records"] adds up the corrupt records the loader replaced (host side only)."""
  queue = collections.deque()

  def put():
    local = next(iterator)
    counts["bad_records"] += int(local.pop("bad_records").sum())
    state = iterator.get_state()
    queue.append((state, {k: jax.make_array_from_process_local_data(
        sharding.batch_sharding(mesh, v.ndim), v) for k, v in local.items()}))

  put()
  while True:
    put()
    yield queue.popleft()


def create_state(method, tx, mesh, seed):
  """Returns (jitted init(rng) producing a sharded state, abstract state, state shardings).

  The state is a plain dict: step, params, model_state (non-trained collections), opt_state and
  `nonfinite_step` (first step whose loss or gradient was not finite, -1 if none)."""

  def init(rng):
    variables = nn.unbox(method.init(rng))
    params = variables.pop("params")
    return dict(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                opt_state=tx.init(params), nonfinite_step=jnp.full((), -1, jnp.int32))

  rng = jax.random.key(seed)
  specs = sharding.logical_specs(jax.eval_shape(method.init, rng))
  abstract = jax.eval_shape(init, rng)
  params_sh = sharding.tree_shardings(abstract["params"], specs.pop("params"), mesh)
  shardings = dict(
      step=sharding.replicated(mesh), nonfinite_step=sharding.replicated(mesh), params=params_sh,
      model_state=sharding.tree_shardings(abstract["model_state"], specs, mesh),
      # Optimizer moments mirror the params they belong to, so they take the params' layout.
      opt_state=optax.tree_map_params(tx, lambda _, s: s, abstract["opt_state"], params_sh,
                                      transform_non_params=lambda _: sharding.replicated(mesh)))
  options = config_base.compiler_options(getattr(method, "config", None))
  return (jax.jit(init, out_shardings=shardings, compiler_options=options), abstract,
          shardings)


def make_train_step(method, tx, schedule, state_shardings, mesh, seed, donate=True):
  """The jitted step (state, batch) -> (new state, metrics). `donate` lets XLA write the new
  state into the old one's buffers (off only to measure what that saves:
  benchmarks/optimisations.py)."""

  def train_step(state, batch):
    step = state["step"]
    rng = jax.random.fold_in(jax.random.key(seed), step)

    def loss_fn(params):
      return method.loss(params, state["model_state"], batch, rng, step)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = dict(params=optax.apply_updates(state["params"], updates), model_state=model_state,
               opt_state=opt_state)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # A non-finite update is never applied, so the state (and any checkpoint) stays good; the host
    # sees `nonfinite_step` at the next log and stops (nan_policy="stop") or goes on ("skip").
    old = {k: state[k] for k in new}
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    first_bad = jnp.where((~finite) & (state["nonfinite_step"] < 0), step, state["nonfinite_step"])
    new.update(step=step + 1, nonfinite_step=first_bad)
    metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(step), **metrics}
    return new, metrics

  data_sh = sharding.batch_sharding(mesh, 1)  # only the leading axis matters for the prefix
  return jax.jit(train_step, in_shardings=(state_shardings, data_sh),
                 out_shardings=(state_shardings, sharding.replicated(mesh)),
                 donate_argnums=0 if donate else (),
                 compiler_options=config_base.compiler_options(getattr(method, "config", None)))


def _check_finite(state, nan_policy, metrics):
  bad = int(jax.device_get(state["nonfinite_step"]))
  if bad >= 0 and nan_policy == "stop":
    raise FloatingPointError(
        f"non-finite loss or gradient at step {bad} (last logged: "
        + ", ".join(f"{k}={float(v):.4g}" for k, v in metrics.items())
        + "); the update was not applied and the last checkpoint is intact. "
        "Lower the learning rate, or set --config.nan_policy=skip to drop such updates.")


class _Run:
  """What training and evaluation of one workdir share: data, method, optimizer, state layout,
  checkpoints and the evaluator (built in that order by `_setup`)."""


def _setup(config, workdir, mesh) -> _Run:
  run = _Run()
  name = config.method
  # ---------------------------------------------------------------- data
  run.train_source = sources.get_source(config.dataset, "train", config.data)
  run.test_source = sources.get_source(config.dataset, "test", config.data)
  print(f"[{name}] data: {sources.describe(run.train_source)} | "
        f"{sources.describe(run.test_source)}", flush=True)
  # What `jaxssl.load` needs besides the config to rebuild the model without the data.
  reporting.write_json(os.path.join(workdir, pretrained.DATA_INFO_FILE),
                       pretrained.data_info(run.train_source, config.data.image_size))
  data_info = methods.DataInfo(image_size=config.data.image_size,
                               num_classes=run.train_source.num_classes)

  # ---------------------------------------------------------------- model, optimizer, state
  run.method = methods.build(config, data_info)
  run.tx, run.schedule = optim.make_optimizer(config.optimizer, config.batch_size,
                                              config.total_steps)
  run.init_fn, abstract_state, run.state_sh = create_state(run.method, run.tx, mesh, config.seed)
  run.abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                    abstract_state, run.state_sh)
  run.ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state["params"]))
  print(f"[{name}] {num_params / 1e6:.2f}M params; mesh {dict(mesh.shape)}; "
        f"{jax.process_count()} process(es)", flush=True)
  run.evaluator = evaluators.build(config, run.method, mesh, run.train_source, run.test_source)
  return run


def _baselines(config, workdir, run):
  """The random-init and raw-input metrics, computed once per workdir (eval/baselines.json)."""
  path = os.path.join(workdir, "eval", "baselines.json")
  baselines = workdir_lib.read_json(path) or {}
  if config.eval.baselines and not baselines:
    # The random-init baseline is the very encoder training starts from (init is a pure function
    # of the seed), so it can be recomputed after a resume.
    init_state = run.init_fn(jax.random.key(config.seed))
    baselines = {**run.evaluator.evaluate(init_state["params"], init_state["model_state"],
                                          "/random_init"),
                 **run.evaluator.input_baselines()}
    del init_state
    reporting.write_json(path, baselines)
  return baselines


def train_and_evaluate(config, workdir, mesh):
  """Trains (or resumes) the run in `workdir`, evaluates it; returns the final metrics."""
  lock = workdir_lib.claim(config, workdir, "train")
  try:
    return _train_and_evaluate(config, workdir, mesh)
  finally:
    if lock:
      lock.release()


def _train_and_evaluate(config, workdir, mesh):
  name = config.method
  # Atomic (tmp + rename), by process 0 only: the other processes of a run may be reading it.
  reporting.write_json(os.path.join(workdir, "config.json"),
                       json.loads(config.to_json_best_effort()))
  run = _setup(config, workdir, mesh)
  ckpt, evaluator, state_sh = run.ckpt, run.evaluator, run.state_sh
  start_step, state, data_state = ckpt.restore(run.abstract_state)
  if state is None:
    start_step, state = 0, run.init_fn(jax.random.key(config.seed))
    if config.init_from:
      state = _load_encoders(state, config.init_from, state_sh)
  else:
    print(f"[{name}] resumed from {ckpt.directory} at step {start_step}", flush=True)

  # ---------------------------------------------------------------- evaluators and baselines
  # Every process decides from what was on disk at start (only process 0 writes), so all of them
  # take the same branches and run the same collective computations.
  final_path = os.path.join(workdir, "eval", "final.json")
  final = workdir_lib.read_json(final_path)
  if final is not None and final.get("step") != config.total_steps:
    final = None  # written for another total_steps (the config was extended): evaluate again
  baselines = _baselines(config, workdir, run)
  # Figures are redrawn at every evaluation (process 0 writes them), the final one last.
  plots_dir = os.path.join(workdir, "plots") if jax.process_index() == 0 else None

  # ---------------------------------------------------------------- training
  reporter = reporting.Reporter(workdir, config.total_steps, start_step, name)
  if start_step < config.total_steps:
    dataset = pipeline.train_dataset(
        run.train_source, global_batch=config.batch_size, seed=config.seed, image_size=config.data.image_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
        bad_records=config.data.bad_records)
    iterator = pipeline.train_iterator(dataset, start_step=0, num_workers=config.data.num_workers)
    if data_state is not None:
      iterator.set_state(data_state)
    elif start_step:
      raise RuntimeError("checkpoint has no data iterator state")
    train_step = make_train_step(run.method, run.tx, run.schedule, state_sh, mesh, config.seed)

    preempted = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    pending_metrics = None
    t_compile = time.time()
    counts = {"bad_records": 0}
    batches = device_batches(iterator, mesh, counts)
    for step in range(start_step + 1, config.total_steps + 1):
      data_state, batch = next(batches)
      state, metrics = train_step(state, batch)
      if step == start_step + 1:
        jax.block_until_ready(metrics)
        print(f"[{name}] first step (compilation included) took {time.time() - t_compile:.1f}s", flush=True)
      pending_metrics = metrics
      if step % config.log_every == 0 or step == config.total_steps:
        host_metrics = jax.device_get(metrics)
        _check_finite(state, config.nan_policy, host_metrics)
        if counts["bad_records"]:  # Corrupt records skipped by this process so far.
          host_metrics = {**host_metrics, "bad_records": counts["bad_records"]}
        reporter.log_train(step, host_metrics, config.batch_size)
      if step % config.ckpt_every == 0 or step == config.total_steps or preempted:
        _check_finite(state, config.nan_policy, jax.device_get(pending_metrics))
        ckpt.save(step, state, data_state)
      if config.eval_every and step % config.eval_every == 0 and step < config.total_steps:
        reporter.log_eval(step, evaluator.evaluate(state["params"], state["model_state"],
                                                   plots_dir=plots_dir))
      if preempted:
        ckpt.close()
        raise Preempted(f"[{name}] preempted (SIGTERM) at step {step}; checkpoint saved to "
                        f"{ckpt.directory}. Rerun the same command to resume.")
    signal.signal(signal.SIGTERM, previous_handler)
    iterator.close()
    ckpt.wait()
  else:
    print(f"[{name}] already trained to step {start_step}; no training needed", flush=True)

  # ---------------------------------------------------------------- final evaluation
  if final is None:
    results = evaluator.evaluate(state["params"], state["model_state"], plots_dir=plots_dir)
    reporter.log_eval(config.total_steps, results)
    final = {"step": config.total_steps, **results, **baselines}
    reporting.write_json(final_path, final)
    reporting.plot_run(workdir)
  reporter.close()
  ckpt.close()
  reporting.print_table(final)
  return final


def evaluate_workdir(config, workdir, mesh, eval_step=""):
  """--mode=eval: evaluates a workdir's checkpoint(s) without training; returns the new final.

  eval_step: "" (the latest checkpoint), a step number, or "all" (every kept checkpoint). Each
  evaluated step gets eval/step_<N>.json; eval/final.json is rewritten with the newest of them,
  exactly as the end of training writes it (figures under plots/ included)."""
  if not workdir_lib.has_checkpoints(workdir):
    raise FileNotFoundError(f"--mode=eval: no checkpoint under {workdir}; train first")
  lock = workdir_lib.claim(config, workdir, "eval")
  try:
    return _evaluate_workdir(config, workdir, mesh, eval_step)
  finally:
    if lock:
      lock.release()


def _evaluate_workdir(config, workdir, mesh, eval_step):
  run = _setup(config, workdir, mesh)
  steps = run.ckpt.all_steps()
  if eval_step == "all":
    chosen = steps
  elif eval_step:
    if not eval_step.isdigit() or int(eval_step) not in steps:
      raise FileNotFoundError(f"--eval_step={eval_step}: no such checkpoint under "
                              f"{run.ckpt.directory}; it keeps steps {steps} (or use all)")
    chosen = [int(eval_step)]
  else:
    chosen = steps[-1:]
  baselines = _baselines(config, workdir, run)
  for step in chosen:
    _, state, _ = run.ckpt.restore(run.abstract_state, step=step)
    newest = step == chosen[-1]
    plots_dir = os.path.join(workdir, "plots") if newest and jax.process_index() == 0 else None
    results = {"step": step, **run.evaluator.evaluate(state["params"], state["model_state"],
                                                      plots_dir=plots_dir), **baselines}
    reporting.write_json(os.path.join(workdir, "eval", f"step_{step}.json"), results)
    print(f"[{config.method}] evaluated step {step}", flush=True)
  reporting.write_json(os.path.join(workdir, "eval", "final.json"), results)
  run.ckpt.close()
  reporting.print_table(results)
  return results


def _is_encoder(name):
  return name == "encoder" or name.endswith("_encoder")


def _load_encoders(state, path, state_sh):
  """Copies the encoders (params and statistics of every top-level subtree named `encoder` or
  `*_encoder`) of another run's workdir or export into a freshly initialised state."""
  _, other = pretrained.load_variables(path)
  names = sorted(k for k in state["params"] if _is_encoder(k) and k in other["params"])
  if not names:
    raise ValueError(f"init_from={path!r}: no encoder in common: this run has "
                     f"{sorted(state['params'])}, that one {sorted(other['params'])}")
  params, model_state = dict(state["params"]), dict(state["model_state"])
  for name in names:
    mine = jax.tree_util.tree_flatten_with_path(params[name])[0]
    theirs = dict(jax.tree_util.tree_flatten_with_path(other["params"][name])[0])
    for key, leaf in mine:
      if key not in theirs or theirs[key].shape != leaf.shape:
        where = name + jax.tree_util.keystr(key)
        raise ValueError(f"init_from={path!r}: {where} has shape {leaf.shape} here but "
                         f"{getattr(theirs.get(key), 'shape', 'is absent')} there; use the same "
                         "encoder config (config.model / video / audio / text) as that run")
    params[name] = other["params"][name]
    for col, tree in other["model_state"].items():
      if col in model_state and name in tree:
        model_state[col] = {**model_state[col], name: tree[name]}
  print(f"[init_from] {', '.join(names)} from {path}", flush=True)
  return jax.device_put({**state, "params": params, "model_state": model_state}, state_sh)
