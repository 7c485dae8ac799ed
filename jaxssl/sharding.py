"""Device mesh and shardings: data parallel, FSDP and tensor parallel from one rule table.

The mesh always has the three axes ("data", "fsdp", "model"); a preset is just a mesh shape:
  dp       data=-1            params replicated, batch split over all devices
  fsdp     fsdp=-1            params and optimizer state split over all devices, batch too
  fsdp+tp  fsdp=-1, model=M   as fsdp, and wide matrices also split M ways over "model"
The batch is split over ("data", "fsdp"). Parameters carry logical axis names (set by the models
with `nn.with_logical_partitioning`); LOGICAL_RULES maps them to mesh axes. A dimension that the
mesh axis does not divide stays replicated, so every model works on every mesh.
"""
import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")

# logical name -> mesh axis. Names absent here are never split.
LOGICAL_RULES = {
    "embed": "fsdp",
    "conv_out": "fsdp",
    "mlp": "model",
    "heads": "model",
    "vocab": "model",
}

PRESETS = {
    "dp": dict(data=-1, fsdp=1, model=1),
    "fsdp": dict(data=1, fsdp=-1, model=1),
    "fsdp+tp": dict(data=1, fsdp=-1, model=2),
}


def mesh_shape(mesh_config, num_devices):
  """Resolves a {data, fsdp, model} dict (one entry may be -1 = the rest) to concrete sizes; a
  non-empty `preset` entry (config.mesh.preset) names a PRESETS shape instead."""
  preset = mesh_config.get("preset") or ""
  if preset:
    if preset not in PRESETS:
      raise ValueError(f"config.mesh.preset: unknown {preset!r}; presets: {', '.join(PRESETS)}")
    given = {a: int(mesh_config[a]) for a in MESH_AXES if a in mesh_config}
    if given and given != PRESETS["dp"]:  # Sizes left at their defaults: the preset decides.
      raise ValueError(f"config.mesh: preset {preset!r} and sizes {given} both given; set one")
    mesh_config = PRESETS[preset]
  sizes = {a: int(mesh_config[a]) for a in MESH_AXES}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {sizes}")
  fixed = int(np.prod([s for s in sizes.values() if s != -1]))
  if any(s == 0 or s < -1 for s in sizes.values()):
    raise ValueError(f"config.mesh: sizes must be positive or -1, got {sizes}")
  if free:
    if num_devices % fixed:
      raise ValueError(f"config.mesh {sizes}: {num_devices} devices are not divisible by {fixed}")
    sizes[free[0]] = num_devices // fixed
  if int(np.prod(list(sizes.values()))) != num_devices:
    raise ValueError(f"config.mesh {sizes} needs {int(np.prod(list(sizes.values())))} devices, "
                     f"but {num_devices} are present; use -1 for one axis to take the rest")
  return sizes


def make_mesh(mesh_config, devices=None):
  devices = jax.devices() if devices is None else list(devices)
  sizes = mesh_shape(mesh_config, len(devices))
  grid = np.asarray(devices).reshape([sizes[a] for a in MESH_AXES])
  # Auto axes: shardings are propagated by XLA and with_sharding_constraint stays legal.
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def batch_sharding(mesh, ndim=1):
  """Leading (batch) axis split over data x fsdp, the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh):
  return NamedSharding(mesh, P())


def logical_to_mesh_spec(names, shape, mesh):
  """PartitionSpec for one array from its logical axis names, replicating any dimension the mesh
  axis does not divide and never using a mesh axis twice."""
  spec, used = [], set()
  for name, dim in zip(names, shape):
    axis = LOGICAL_RULES.get(name) if name else None
    if axis is None or axis in used or mesh.shape[axis] == 1 or dim % mesh.shape[axis]:
      spec.append(None)
    else:
      spec.append(axis)
      used.add(axis)
  return P(*spec)


def tree_shardings(abstract_tree, logical_specs, mesh):
  """NamedShardings for a pytree of arrays given a matching pytree of logical PartitionSpecs
  (leaves without annotation, e.g. BatchNorm statistics or scalars, are replicated)."""

  def one(x, spec):
    names = tuple(spec) if isinstance(spec, P) else ()
    names = names + (None,) * (x.ndim - len(names))
    return NamedSharding(mesh, logical_to_mesh_spec(names, x.shape, mesh))

  return jax.tree.map(one, abstract_tree, logical_specs, is_leaf=lambda s: isinstance(s, P))


def logical_specs(boxed_variables):
  """Logical PartitionSpecs of boxed flax variables (None-padded for unannotated leaves)."""
  return nn.get_partition_spec(boxed_variables)
