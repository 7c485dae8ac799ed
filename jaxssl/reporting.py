"""What a run reports: metrics.jsonl, TensorBoard events, the progress line, eval JSON and plots.

Only process 0 writes files. `metrics.jsonl` holds one JSON object per logged step; when a run
resumes from step s, lines after s (written after the last checkpoint by the killed run) are
dropped first, so the file never repeats a step and equals an uninterrupted run's.
"""
import json
import os
import time

import jax


def _is_writer():
  return jax.process_index() == 0


def _fmt_duration(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def write_json(path, obj):
  """Atomic write (tmp + rename) so a kill never leaves a half-written JSON behind."""
  if not _is_writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def read_jsonl(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Reporter:

  def __init__(self, workdir, total_steps, start_step, name):
    self.workdir, self.total_steps, self.name = workdir, total_steps, name
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tb = None
    if _is_writer():
      kept = [r for r in read_jsonl(self.path) if r["step"] <= start_step]
      with open(self.path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
      from tensorboardX import SummaryWriter  # imported late: it is slow and only process 0 needs it
      self.tb = SummaryWriter(os.path.join(workdir, "tb"))
    self.window_start = (time.time(), start_step)
    self.run_start = self.window_start

  def log_train(self, step, metrics, global_batch):
    """Logs host-side metric values for `step` and prints the progress line."""
    now = time.time()
    t0, s0 = self.window_start
    ex_per_s = (step - s0) * global_batch / max(now - t0, 1e-9)
    self.window_start = (now, step)
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()},
              "examples_per_s": ex_per_s}
    elapsed = now - self.run_start[0]
    done = step - self.run_start[1]
    eta = elapsed / max(done, 1) * (self.total_steps - step)
    extras = " ".join(f"{k} {float(v):.4g}" for k, v in metrics.items() if k != "loss")
    print(f"[{self.name}] step {step}/{self.total_steps} | loss {float(metrics['loss']):.4f} | "
          f"{extras} | {ex_per_s:.0f} ex/s | elapsed {_fmt_duration(elapsed)} ETA {_fmt_duration(eta)}",
          flush=True)
    self._write(record)

  def log_eval(self, step, results):
    print(f"[{self.name}] eval @ step {step}: " +
          ", ".join(f"{k} {v:.4f}" for k, v in sorted(results.items())), flush=True)
    write_json(os.path.join(self.workdir, "eval", f"step_{step}.json"), results)
    self._write({"step": int(step), **{f"eval/{k}": v for k, v in results.items()}}, jsonl=False)

  def _write(self, record, jsonl=True):
    if not _is_writer():
      return
    if jsonl:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
    for k, v in record.items():
      if k != "step":
        self.tb.add_scalar(k, v, record["step"])
    self.tb.flush()

  def close(self):
    if self.tb is not None:
      self.tb.close()


BASELINES = ("/random_init", "/raw_pixels", "/raw_input")
# Table order: retrieval first (the multimodal headline), then classification; within a task,
# recall before median rank. Unknown metrics come last, alphabetically.
_TASK_ORDER = ("t2v", "v2t", "a2v", "zeroshot", "knn", "linear")
_METRIC_ORDER = ("R@1", "R@5", "R@10", "median_rank")


def _table_order(key):
  parts = key.split("/")
  task = _TASK_ORDER.index(parts[0]) if parts[0] in _TASK_ORDER else len(_TASK_ORDER)
  metric = _METRIC_ORDER.index(parts[-1]) if parts[-1] in _METRIC_ORDER else len(_METRIC_ORDER)
  return task, parts[:-1], metric, key


def _cell(key, value, width):
  if value is None:
    return f"{'-':>{width}}"
  # Ranks are counts (1 = best); everything else is a fraction.
  return f"{value:>{width}.1f}" if key.endswith("median_rank") else f"{value:>{width}.4f}"


def print_table(final):
  """The end-of-run table: each metric beside its baselines (columns only for baselines present)."""
  base = sorted((k for k in final if not k.endswith(BASELINES) and k != "step"), key=_table_order)
  columns = [s for s in BASELINES if any(k + s in final for k in base)]
  width = max([20] + [len(k) + 1 for k in base])
  lines = [f"{'metric':<{width}} {'trained':>9}" + "".join(f" {s[1:]:>12}" for s in columns)]
  for k in base:
    lines.append(f"{k:<{width}} {_cell(k, final[k], 9)}"
                 + "".join(" " + _cell(k, final.get(k + s), 12) for s in columns))
  print("\n".join(lines), flush=True)


def _plotted(key):
  """Top-1 accuracies and R@1 only: they share the [0, 1] axis (ranks would flatten it) and
  keep the legend readable next to their baselines."""
  for suffix in BASELINES:
    key = key.removesuffix(suffix)
  return key.endswith(("top1", "R@1"))


def plot_run(workdir):
  """plots/training.png: training loss and the eval metrics over steps."""
  if not _is_writer():
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  evals = sorted((int(f[5:-5]), json.load(open(os.path.join(workdir, "eval", f))))
                 for f in os.listdir(os.path.join(workdir, "eval")) if f.startswith("step_"))
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  if records:
    axes[0].plot([r["step"] for r in records], [r["loss"] for r in records])
  axes[0].set(title="training loss", xlabel="step")
  for key in sorted({k for _, e in evals for k in e if _plotted(k)}):
    axes[1].plot([s for s, e in evals if key in e], [e[key] for _, e in evals if key in e], "o-", label=key)
  baselines_path = os.path.join(workdir, "eval", "baselines.json")
  baselines = json.load(open(baselines_path)) if os.path.exists(baselines_path) else {}
  baselines = {k: v for k, v in baselines.items() if _plotted(k)}
  for i, (key, value) in enumerate(sorted(baselines.items())):
    axes[1].axhline(value, color=f"C{i + 2}", linestyle="--", linewidth=1, label=key)
  axes[1].set(title="evaluation (held-out); dashed: baselines", xlabel="step")
  if evals or baselines:
    axes[1].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  fig.savefig(os.path.join(workdir, "plots", "training.png"), dpi=100)
  plt.close(fig)
