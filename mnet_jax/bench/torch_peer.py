"""The PyTorch side of the benchmark: the twin of a layer spec (or timm's MobileNet V1), its training step and
inference forward, run in a child process of the bench (`compare.py`); torch is imported only there, and
nothing of the trainer (this module stays light to import)."""

import os

import numpy as np

from mnet_jax.bench.timing import timed

TIMM_MODEL = "mobilenetv1_100"  # alpha 1, a stride-2 stem, 3x3 depthwise kernels
RUNS = {}  # in the peer's process: the model and its "train" and "infer" runs, of the last setting built


def torch_model(layers):
  """The same architecture in PyTorch, built from a layer spec (`Layer`s: convs, then the classifier): each conv
  followed by BatchNorm and ReLU6, global average pool, dropout, fully connected. A depthwise layer with several
  kernel sizes is MixConv as timm's MixedConv2d does it: split the channels, one depthwise conv per group,
  concatenate."""
  import torch
  from torch import nn

  class MixedDepthwise(nn.Module):
    def __init__(self, groups, stride):
      super().__init__()
      self.splits = [channels for _, channels in groups]
      self.convs = nn.ModuleList(nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False) for k, c in groups)

    def forward(self, x):
      return torch.cat([conv(part) for conv, part in zip(self.convs, torch.split(x, self.splits, 1))], 1)

  def conv(layer):
    if layer.kind == "depthwise" and len(layer.groups) > 1:
      return MixedDepthwise(layer.groups, layer.stride)
    groups = layer.in_channels if layer.kind == "depthwise" else 1
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.kernel_size // 2,
                     groups=groups, bias=False)

  *convs, classifier = layers
  modules = []
  for layer in convs:
    modules += [conv(layer), nn.BatchNorm2d(layer.out_channels, eps=1e-3, momentum=0.01), nn.ReLU6(inplace=True)]
  return nn.Sequential(*modules, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.001),
                       nn.Linear(classifier.in_channels, classifier.out_channels))


def setup(layers, resolution, batch, dtype, platform_name, compile_model, peer_name, learning_rate, momentum):
  """Builds the PyTorch model (the twin of `layers`, or timm's MobileNet V1 with as many classes) and its training
  step (SGD at `learning_rate` with `momentum`) and inference runs in the peer's process, warmed up."""
  import torch
  torch_device = torch.device("cuda" if platform_name == "gpu" else "cpu")
  sync = torch.cuda.synchronize if torch_device.type == "cuda" else (lambda: None)
  torch.manual_seed(0)
  num_classes = layers[-1].out_channels
  if peer_name == "timm":
    import timm
    model = timm.create_model(TIMM_MODEL, num_classes=num_classes).to(torch_device)
  else:
    model = torch_model(layers).to(torch_device)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, resolution, resolution)).astype(np.float32))
  images = images.to(torch_device)  # NCHW: on CPU, PyTorch's channels_last depthwise convolutions are far slower
  labels = torch.from_numpy(rng.integers(0, num_classes, batch)).to(torch_device)
  optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
  run_model = torch.compile(model) if compile_model else model
  autocast = torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def train():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = torch.nn.functional.cross_entropy(run_model(images), labels)
    loss.backward()
    optimizer.step()
    sync()

  def infer():
    with torch.inference_mode(), autocast:
      run_model(images)
    sync()

  for training in (True, False):  # warm-up, also of torch.compile's graph for each mode
    model.train(training)
    for _ in range(2):
      train() if training else infer()
  RUNS.update(model=model, train=train, infer=infer)


def seconds(kind, calls):
  """Wall seconds of `calls` calls of the peer's `kind` run ("train" or "infer"), in the peer's process."""
  RUNS["model"].train(kind == "train")
  return timed(RUNS[kind], calls).seconds


def set_threads(platform_name):
  """One thread per core on CPU (in the peer's process: the setting holds for its later calls); returns the count."""
  import torch
  if platform_name == "cpu":
    torch.set_num_threads(os.cpu_count())
  return torch.get_num_threads()
