"""Plug-ins chosen by name in the config and resolved by module path (methods, evaluators)."""
import importlib


def resolve(package: str, name: str, attribute: str, config_key: str):
  """`attribute` of the module `<package>.<name>`, with errors that name the config key.

  Only a missing `<package>.<name>` itself is reported as a bad name; an import error inside an
  existing plug-in propagates unchanged, so its real cause stays visible.
  """
  folder = package.replace(".", "/")
  if not name.isidentifier():
    raise ValueError(f"{config_key}={name!r} is not a module name (modules live in {folder}/)")
  module_name = f"{package}.{name}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:
      raise
    raise ValueError(f"{config_key}={name!r}: no module {folder}/{name}.py") from None
  if not hasattr(module, attribute):
    raise ValueError(f"{config_key}={name!r}: {folder}/{name}.py defines no {attribute} "
                     "(a helper module, not a plug-in)")
  return getattr(module, attribute)
