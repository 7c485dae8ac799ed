"""Ahead-of-time compile check: `python -m jaxssl.main --config=... --compile_only`.

Lowers and compiles a config's train step for the run's mesh, from shapes alone (no data is read,
no parameter is allocated, no step runs), and prints what XLA says one step costs each device:
its memory (arguments, outputs, temporaries) and its FLOPs.

Why: a paper-scale config fails at scale by running out of device memory or by a sharding that
does not partition; both show up here in minutes on one host. With `--fake_devices=N` the mesh is
built on N CPU devices, so a pod's layout (e.g. `--fake_devices=32 --config.mesh.fsdp=-1`) can
be checked on a laptop; memory is then what the CPU compiler plans, a guide to an accelerator's.
"""
import time

import jax
import jax.numpy as jnp

from jaxssl import methods, optim, train
from jaxssl.data import sources

VIDEO_DATASETS = ("avshapes", "av_records")


def abstract_batch(config) -> dict:
  """ShapeDtypeStructs of one global batch as the pipeline delivers it (jaxssl.data.pipeline):
  uint8 images or clips, float32 audio, int32 captions, labels and record indices."""
  b, d = config.batch_size, config.data
  spec = lambda *shape, dtype=jnp.int32: jax.ShapeDtypeStruct((b, *shape), dtype)  # noqa: E731
  if config.dataset in VIDEO_DATASETS:
    samples = int(round(d.num_frames / d.fps * d.sample_rate))
    batch = dict(video=spec(d.num_frames, d.image_size, d.image_size, 3, dtype=jnp.uint8),
                 audio=spec(samples, dtype=jnp.float32),
                 text=spec(d.num_captions, d.max_caption_len))
  else:
    batch = dict(image=spec(d.image_size, d.image_size, 3, dtype=jnp.uint8))
  return dict(batch, label=spec(), index=spec())


def _num_classes(config):
  """The train split's class count, or None when its data cannot be opened here (a paper-scale
  config checked away from its data): the method is then built without its online probe."""
  try:
    return sources.get_source(config.dataset, "train", config.data).num_classes
  except (FileNotFoundError, ImportError, ValueError):
    return None


def compile_train_step(config, mesh):
  """(the compiled train step, report dict). Call inside `jax.set_mesh(mesh)`."""
  num_classes = _num_classes(config)
  method = methods.build(config, methods.DataInfo(config.data.image_size, num_classes or 0))
  tx, schedule = optim.make_optimizer(config.optimizer, config.batch_size, config.total_steps)
  _, abstract_state, state_sh = train.create_state(method, tx, mesh, config.seed)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract_state, state_sh)
  step = train.make_train_step(method, tx, schedule, state_sh, mesh, config.seed)
  start = time.perf_counter()
  lowered = step.lower(state, abstract_batch(config))
  lower_s = time.perf_counter() - start
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start - lower_s
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  report = dict(
      config=config.method, dataset=config.dataset, batch_size=config.batch_size,
      mesh=dict(mesh.shape), devices=mesh.devices.size, device_kind=mesh.devices.flat[0].device_kind,
      params=sum(x.size for x in jax.tree.leaves(abstract_state["params"])),
      online_probe_classes=num_classes, lower_s=lower_s, compile_s=compile_s,
      # XLA compiles one SPMD program that every device runs: its costs are per device.
      flops_per_device=float((cost or {}).get("flops", 0.0)) or None,
      argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
      alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
      generated_code_bytes=memory.generated_code_size_in_bytes)
  # Donated state buffers are reused for the new state (alias), so they are not counted twice.
  report["total_bytes"] = (report["argument_bytes"] + report["output_bytes"]
                           - report["alias_bytes"] + report["temp_bytes"])
  return compiled, report


def _size(n):
  unit = next((u for u in ("GiB", "MiB", "KiB") if n >= 2**(10 * "BKMG".index(u[0]))), "B")
  return f"{n / 2**(10 * 'BKMG'.index(unit[0])):.3g} {unit}"


def format_report(r) -> str:
  flops = r["flops_per_device"]
  probe = ("online probe: " + (f"{r['online_probe_classes']} classes"
                               if r["online_probe_classes"] is not None
                               else "left out (no data here to count classes)"))
  lines = [
      f"[compile_only] {r['config']} on {r['dataset']}, global batch {r['batch_size']}, "
      f"{r['params'] / 1e6:.2f}M params; {probe}",
      f"[compile_only] mesh {r['mesh']} over {r['devices']} x {r['device_kind']}; "
      f"lowered in {r['lower_s']:.1f} s, compiled in {r['compile_s']:.1f} s",
      f"[compile_only] per device: {_size(r['total_bytes'])} (arguments {_size(r['argument_bytes'])}"
      f" + outputs {_size(r['output_bytes'])} - donated {_size(r['alias_bytes'])} + temporaries "
      f"{_size(r['temp_bytes'])})",
      "[compile_only] FLOPs per step: " + (
          f"{flops / 1e9:.4g} GFLOP per device, {flops * r['devices'] / 1e9:.4g} GFLOP on all "
          f"{r['devices']}" if flops else "not reported by this backend"),
  ]
  return "\n".join(lines)
