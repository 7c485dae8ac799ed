"""Shared by the method tests: one method's loss, metrics and gradients on a mesh (the 8-vs-1-device
equality tests), and a traced train step (the paper-scale configs)."""
import jax
import numpy as np

from jaxssl import optim, sharding, train


def loss_metrics_grads(method, config, mesh, batch):
  """Initialises `method`'s train state on `mesh`, puts `batch` there batch-sharded and returns
  (loss float, metrics, grads as numpy, the state's shardings)."""
  tx, _ = optim.make_optimizer(config.optimizer, config.batch_size, config.total_steps)
  init_fn, _, state_sh = train.create_state(method, tx, mesh, config.seed)
  state = init_fn(jax.random.key(0))
  data = {k: jax.device_put(v, sharding.batch_sharding(mesh, v.ndim)) for k, v in batch.items()}

  @jax.jit
  def f(params, model_state, data):
    (loss, (metrics, _)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, model_state, data, jax.random.key(1), 0)
    return loss, metrics, grads

  with jax.set_mesh(mesh):
    loss, metrics, grads = f(state["params"], state["model_state"], data)
  return float(loss), jax.device_get(metrics), jax.tree.map(np.asarray, grads), state_sh


def trace_train_step(method, config, abstract_batch):
  """One train step of a (paper-scale) config traced with `jax.eval_shape`, never run: returns
  (abstract state before, after, metrics) on a 1-device mesh."""
  tx, schedule = optim.make_optimizer(config.optimizer, config.batch_size, config.total_steps)
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, model=1), jax.devices()[:1])
  _, abstract_state, state_sh = train.create_state(method, tx, mesh, config.seed)
  step = train.make_train_step(method, tx, schedule, state_sh, mesh, config.seed)
  with jax.set_mesh(mesh):
    new_state, metrics = jax.eval_shape(step, abstract_state, abstract_batch)
  return abstract_state, new_state, metrics
