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

from jaxssl import checkpoint, config_base, evaluators, methods, optim, reporting, sharding
from jaxssl.data import pipeline, sources


class Preempted(SystemExit):
  """Raised after a SIGTERM once the checkpoint is written; exit code 143 (= 128 + SIGTERM)."""


def _device_batches(iterator, mesh):
  """Yields (iterator state just after this batch, global batch), with the next batch already in
  flight to the devices so host loading and the device step overlap. The state is the one a
  checkpoint taken after training on this batch must hold: it points at the following batch."""
  queue = collections.deque()

  def put():
    local = next(iterator)
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
  return jax.jit(init, out_shardings=shardings), abstract, shardings


def make_train_step(method, tx, schedule, state_shardings, mesh, seed):

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
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)


def _check_finite(state, nan_policy, metrics):
  bad = int(jax.device_get(state["nonfinite_step"]))
  if bad >= 0 and nan_policy == "stop":
    raise FloatingPointError(
        f"non-finite loss or gradient at step {bad} (last logged: "
        + ", ".join(f"{k}={float(v):.4g}" for k, v in metrics.items())
        + "); the update was not applied and the last checkpoint is intact. "
        "Lower the learning rate, or set --config.nan_policy=skip to drop such updates.")


def train_and_evaluate(config, workdir, mesh):
  name = config.method
  os.makedirs(workdir, exist_ok=True)
  _refuse_other_config(config, workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1, sort_keys=True))

  # ---------------------------------------------------------------- data
  train_source = sources.get_source(config.dataset, "train", config.data)
  test_source = sources.get_source(config.dataset, "test", config.data)
  print(f"[{name}] data: {sources.describe(train_source)} | {sources.describe(test_source)}", flush=True)
  data_info = methods.DataInfo(image_size=config.data.image_size, num_classes=train_source.num_classes)

  # ---------------------------------------------------------------- model, optimizer, state
  method = methods.build(config, data_info)
  tx, schedule = optim.make_optimizer(config.optimizer, config.batch_size, config.total_steps)
  init_fn, abstract_state, state_sh = create_state(method, tx, mesh, config.seed)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  start_step, state, data_state = ckpt.restore(jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, state_sh))
  if state is None:
    start_step, state = 0, init_fn(jax.random.key(config.seed))
    if config.init_from:
      state = _load_encoder(state, config.init_from, state_sh)
  else:
    print(f"[{name}] resumed from {ckpt.directory} at step {start_step}", flush=True)
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state["params"]))
  print(f"[{name}] {num_params / 1e6:.2f}M params; mesh {dict(mesh.shape)}; "
        f"{jax.process_count()} process(es)", flush=True)

  # ---------------------------------------------------------------- evaluators and baselines
  evaluator = evaluators.build(config, method, mesh, train_source, test_source)
  # Every process decides from what was on disk at start (only process 0 writes), so all of them
  # take the same branches and run the same collective computations.
  baselines_path = os.path.join(workdir, "eval", "baselines.json")
  final_path = os.path.join(workdir, "eval", "final.json")
  final = _read_json(final_path)
  if final is not None and final.get("step") != config.total_steps:
    final = None  # written for another total_steps (the config was extended): evaluate again
  baselines = _read_json(baselines_path) or {}
  if config.eval.baselines and not baselines:
    # The random-init baseline is the very encoder training starts from (init is a pure function
    # of the seed), so it can be recomputed after a resume.
    init_state = init_fn(jax.random.key(config.seed))
    baselines = {**evaluator.evaluate(init_state["params"], init_state["model_state"], "/random_init"),
                 **evaluator.input_baselines()}
    del init_state
    reporting.write_json(baselines_path, baselines)

  # ---------------------------------------------------------------- training
  reporter = reporting.Reporter(workdir, config.total_steps, start_step, name)
  if start_step < config.total_steps:
    dataset = pipeline.train_dataset(
        train_source, global_batch=config.batch_size, seed=config.seed, image_size=config.data.image_size,
        process_index=jax.process_index(), process_count=jax.process_count())
    iterator = pipeline.train_iterator(dataset, start_step=0, num_workers=config.data.num_workers)
    if data_state is not None:
      iterator.set_state(data_state)
    elif start_step:
      raise RuntimeError("checkpoint has no data iterator state")
    train_step = make_train_step(method, tx, schedule, state_sh, mesh, config.seed)

    preempted = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    pending_metrics = None
    t_compile = time.time()
    batches = _device_batches(iterator, mesh)
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
        reporter.log_train(step, host_metrics, config.batch_size)
      if step % config.ckpt_every == 0 or step == config.total_steps or preempted:
        _check_finite(state, config.nan_policy, jax.device_get(pending_metrics))
        ckpt.save(step, state, data_state)
      if config.eval_every and step % config.eval_every == 0 and step < config.total_steps:
        reporter.log_eval(step, evaluator.evaluate(state["params"], state["model_state"]))
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
    plots_dir = os.path.join(workdir, "plots") if jax.process_index() == 0 else None
    results = evaluator.evaluate(state["params"], state["model_state"], plots_dir=plots_dir)
    reporter.log_eval(config.total_steps, results)
    final = {"step": config.total_steps, **results, **baselines}
    reporting.write_json(final_path, final)
    reporting.plot_run(workdir)
  reporter.close()
  ckpt.close()
  reporting.print_table(final)
  return final


def _refuse_other_config(config, workdir):
  """Resuming a workdir with another config would silently mix two runs: fail, naming the keys."""
  saved = _read_json(os.path.join(workdir, "config.json"))
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if saved is None or not (os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir))):
    return
  diffs = config_base.resume_differences(saved, config)
  if diffs:
    raise ValueError(f"workdir {workdir} holds a run with another config ({'; '.join(diffs)}). "
                     "Use a new --workdir, or rerun with that run's config to resume it.")


def _read_json(path):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _load_encoder(state, workdir, state_sh):
  """Copies the `encoder` params and statistics of another run into a freshly initialised state."""
  other = checkpoint.load_params(workdir)
  params = dict(state["params"])
  if "encoder" not in other["params"] or "encoder" not in params:
    raise ValueError(f"init_from={workdir!r}: both runs need an 'encoder' parameter subtree")
  params["encoder"] = other["params"]["encoder"]
  model_state = jax.tree.map(lambda x: x, state["model_state"])
  for col, tree in other["model_state"].items():
    if col in model_state and "encoder" in tree:
      model_state[col] = {**model_state[col], "encoder": tree["encoder"]}
  new = {**state, "params": params, "model_state": model_state}
  return jax.device_put(new, state_sh)
