"""launch/colab.ipynb runs top to bottom on CPU inside this checkout: no clone, no install, a
quick SimCLR run, its plots shown and its final metrics printed."""
import os

import pytest

REASON = "executing the notebook needs nbclient, nbformat and ipykernel (pip install them)"
nbclient = pytest.importorskip("nbclient", reason=REASON)
nbformat = pytest.importorskip("nbformat", reason=REASON)
pytest.importorskip("ipykernel", reason=REASON)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_colab_notebook_runs(tmp_path, monkeypatch):
  workdir = tmp_path / "simclr_quick"
  monkeypatch.setenv("JAXSSL_NOTEBOOK_WORKDIR", str(workdir))  # The kernel inherits it.
  nb = nbformat.read(os.path.join(REPO, "launch", "colab.ipynb"), as_version=4)
  # Started in launch/, as Jupyter starts a notebook in its own directory: the notebook must find
  # the checkout above it. timeout is per cell; the training cell takes ~1 min on 2 cores.
  nbclient.NotebookClient(nb, timeout=600, startup_timeout=120, kernel_name="python3",
                          resources={"metadata": {"path": os.path.join(REPO, "launch")}}).execute()

  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert f"checkout: {REPO}\n" in text and "already installed" in text
  assert "step 6/6" in text
  images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
  assert "plots/training.png" in text and "plots/embeddings.png" in text and len(images) == 2
  assert "knn/top1 " in text and "linear/top1/random_init" in text
  assert (workdir / "eval" / "final.json").exists()
