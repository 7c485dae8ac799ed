"""Plain PyTorch twins of two `python -m jaxssl.bench` rows, for the JAX / PyTorch comparison.

  python benchmarks/pytorch_steps.py --model=simclr_r18 --batch_size=32 [--steps=10 --warmup=2]
  python benchmarks/pytorch_steps.py --model=mae_vit_tiny --batch_size=16 [--out=FILE]

Each is one training step of the same model, sizes, batch and loss as the jaxssl row, in eager
PyTorch with torch.set_num_threads(2):

  simclr_r18    ResNet-18 (3x3 stride-1 stem, no max-pool, zero-initialised last BatchNorm scale of
                each block), projector Linear(512, 512, no bias)-BN-ReLU-Linear(512, 128), NT-Xent
                at T = 0.1 over both views of 32x32 images, BatchNorm over the 2N views; LARS
                (optax.lars: weight decay 1e-6 and trust ratio 1e-3 on matrices, momentum 0.9).
  mae_vit_tiny  ViT-Tiny/16 (192 wide, 12 blocks, 3 heads, class token, fixed sin-cos positions)
                on the 25% visible patches of 224x224 images, decoder of 8 pre-norm blocks 512
                wide with 16 heads, norm-pix MSE on the masked patches; AdamW (0.9, 0.95), weight
                decay 0.05 on matrices. Separate q/k/v projections and tanh-GELU, as flax's.

Not the same, on purpose: no data augmentation here (jaxssl augments on the device inside its
step; a PyTorch pipeline does it in data-loader workers, outside the step), the inputs are fixed
random tensors, and jaxssl's step also computes the gradient norm and guards against non-finite
updates. Prints one JSON object, and writes a list of it to --out.
"""
import argparse
import json
import math
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter


# ------------------------------------------------------------------------------- SimCLR, ResNet-18
class BasicBlock(nn.Module):

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    nn.init.zeros_(self.bn2.weight)
    self.proj = None
    if cin != cout or stride != 1:
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu((x if self.proj is None else self.proj(x)) + y)


def resnet18_cifar(width=64):
  layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
  cin = width
  for stage in range(4):
    for block in range(2):
      layers.append(BasicBlock(cin, width * 2**stage, 2 if stage and not block else 1))
      cin = width * 2**stage
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SimCLR(nn.Module):

  def __init__(self, temperature=0.1):
    super().__init__()
    self.temperature = temperature
    self.encoder = resnet18_cifar()
    self.projector = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512),
                                   nn.ReLU(), nn.Linear(512, 128))

  def forward(self, views):
    z = F.normalize(self.projector(self.encoder(views)), dim=1)  # both views, one BN batch
    n = z.shape[0] // 2
    logits = (z @ z.T / self.temperature).masked_fill(
        torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, positives)


class LARS:
  """optax.lars as jaxssl configures it: decay, trust ratio, -lr, then momentum."""

  def __init__(self, params, lr, weight_decay=1e-6, momentum=0.9, trust=1e-3):
    self.params = list(params)
    self.buffers = [torch.zeros_like(p) for p in self.params]
    self.lr, self.weight_decay, self.momentum, self.trust = lr, weight_decay, momentum, trust

  @torch.no_grad()
  def step(self):
    for p, buf in zip(self.params, self.buffers):
      g = p.grad
      if p.ndim > 1:  # Matrices only, as optax's masks in jaxssl.optim.
        g = g.add(p, alpha=self.weight_decay)
        p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
        ratio = torch.where((p_norm > 0) & (g_norm > 0), self.trust * p_norm / g_norm, 1.0)
        g = g * ratio
      buf.mul_(self.momentum).add_(g, alpha=-self.lr)
      p.add_(buf)

  def zero_grad(self):
    for p in self.params:
      p.grad = None


def simclr_r18(batch_size):
  model = SimCLR()
  views = torch.randn(2 * batch_size, 3, 32, 32)
  return model, LARS(model.parameters(), lr=1.5 * batch_size / 256), lambda: model(views)


# ------------------------------------------------------------------------------- MAE, ViT-Tiny/16
def posemb_sincos_2d(h, w, width):
  """jaxssl.models.vit.posemb_sincos_2d: (1, h * w, width) float32."""
  y, x = np.mgrid[:h, :w]
  omega = 1.0 / 10_000**(np.arange(width // 4) / (width // 4))
  y, x = np.outer(y.reshape(-1), omega), np.outer(x.reshape(-1), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return torch.tensor(pe[None], dtype=torch.float32)


class Block(nn.Module):
  """Pre-norm transformer block of jaxssl.models.vit.Encoder1DBlock."""

  def __init__(self, width, heads):
    super().__init__()
    self.heads = heads
    self.ln1, self.ln2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
    self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
    self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

  def forward(self, x):
    b, n, c = x.shape
    y = self.ln1(x)
    q, k, v = (proj(y).view(b, n, self.heads, c // self.heads).transpose(1, 2)
               for proj in (self.q, self.k, self.v))
    y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
    x = x + self.out(y)
    return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class MAE(nn.Module):

  def __init__(self, image_size=224, patch=16, width=192, depth=12, heads=3, decoder_width=512,
               decoder_depth=8, decoder_heads=16, mask_ratio=0.75):
    super().__init__()
    self.patch, self.grid = patch, image_size // patch
    self.keep = int(self.grid**2 * (1 - mask_ratio))
    self.embedding = nn.Conv2d(3, width, patch, patch)
    self.cls = nn.Parameter(torch.zeros(1, 1, width))
    self.encoder = nn.Sequential(*(Block(width, heads) for _ in range(depth)),
                                 nn.LayerNorm(width, eps=1e-6))
    self.decoder_embed = nn.Linear(width, decoder_width)
    self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, decoder_width))
    self.decoder = nn.Sequential(*(Block(decoder_width, decoder_heads)
                                   for _ in range(decoder_depth)),
                                 nn.LayerNorm(decoder_width, eps=1e-6))
    self.pred = nn.Linear(decoder_width, patch * patch * 3)
    self.register_buffer("pos", posemb_sincos_2d(self.grid, self.grid, width))
    self.register_buffer("decoder_pos", posemb_sincos_2d(self.grid, self.grid, decoder_width))

  def patchify(self, images):
    n, p, g = images.shape[0], self.patch, self.grid
    x = images.reshape(n, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, g * g, p * p * 3)

  def forward(self, images):
    n, length = images.shape[0], self.grid**2
    x = self.embedding(images).flatten(2).transpose(1, 2) + self.pos
    ids_shuffle = torch.argsort(torch.rand(n, length), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = (ids_restore >= self.keep).float()
    x = torch.gather(x, 1, ids_shuffle[:, :self.keep, None].expand(-1, -1, x.shape[-1]))
    x = self.encoder(torch.cat([self.cls.expand(n, -1, -1), x], dim=1))
    x = self.decoder_embed(x)
    cls, x = x[:, :1], x[:, 1:]
    x = torch.cat([x, self.mask_token.expand(n, length - self.keep, -1)], dim=1)
    x = torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1])) + self.decoder_pos
    pred = self.pred(self.decoder(torch.cat([cls, x], dim=1)))[:, 1:]
    target = self.patchify(images)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6)**.5
    per_patch = ((pred - target)**2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def mae_vit_tiny(batch_size):
  model = MAE()
  matrices = [p for p in model.parameters() if p.ndim > 1]
  others = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW([dict(params=matrices, weight_decay=0.05),
                                 dict(params=others, weight_decay=0.0)],
                                lr=1.5e-3 * batch_size / 256, betas=(0.9, 0.95))
  images = torch.randn(batch_size, 3, 224, 224)
  return model, optimizer, lambda: model(images)


MODELS = {"simclr_r18": simclr_r18, "mae_vit_tiny": mae_vit_tiny}


# ------------------------------------------------------------------------------- measurement
def peak_flops(size=2048):
  """FLOP/s of the best of 5 float32 size x size matmuls."""
  a, b = torch.randn(size, size), torch.randn(size, size)
  a @ b
  best = math.inf
  for _ in range(5):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=sorted(MODELS), required=True)
  parser.add_argument("--batch_size", type=int, required=True)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--out")
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model, optimizer, loss_fn = MODELS[args.model](args.batch_size)
  model.train()

  def step():
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss

  with flop_counter.FlopCounterMode(display=False) as counter:  # forward and backward
    step()
  flops = counter.get_total_flops()
  times = []
  for _ in range(args.warmup + args.steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times[args.warmup:])
  peak = peak_flops()
  row = dict(
      name=args.model, config=f"benchmarks/pytorch_steps.py --model={args.model}",
      framework="pytorch", device=f"cpu, {torch.get_num_threads()} threads",
      compute_dtype="float32", batch_size=args.batch_size,
      params=sum(p.numel() for p in model.parameters()), step_ms=1e3 * step_s,
      step_ms_min=1e3 * min(times[args.warmup:]), step_ms_max=1e3 * max(times[args.warmup:]),
      examples_per_s=args.batch_size / step_s, flops_per_step=flops, flops_per_s=flops / step_s,
      peak_flops_per_s=peak, utilisation=flops / step_s / peak, compile_s=None,
      peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      memory_source="host max RSS", pipeline_examples_per_s=None, pipeline_over_step=None,
      torch_version=torch.__version__)
  print(json.dumps(row))
  if args.out:
    with open(args.out, "w") as f:
      json.dump([row], f, indent=1)


if __name__ == "__main__":
  main()
