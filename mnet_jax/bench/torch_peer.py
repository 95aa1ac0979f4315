"""The PyTorch side of the benchmark: the twin of a layer spec of any family (or timm's MobileNet V1), its training
step and inference forward, run in a child process of the bench (`compare.py`); torch is imported only there, and
nothing of the trainer (this module stays light to import)."""

import os

import numpy as np

from mnet_jax.bench.timing import timed

TIMM_MODEL = "mobilenetv1_100"  # alpha 1, a stride-2 stem, 3x3 depthwise kernels
RUNS = {}  # in the peer's process: the model and its "train" and "infer" runs, of the last setting built


ACTIVATIONS = ("relu", "relu6", "hard_swish", "linear")  # spec.ACTIVATIONS, as torch.nn modules below


def torch_model(layers, bn_momentum=0.99, bn_epsilon=1e-3, dropout_rate=0.001, activation="relu6"):
  """The same network in PyTorch, built from a layer spec (spec.Layer) as network.apply_layers runs it: each conv
  (no bias) followed by BatchNorm and its activation (`activation` for a layer whose own is ''), a squeeze-excite
  layer as pool, 1x1 conv + ReLU, 1x1 conv + hard-sigmoid, scale; the input of layer `residual_from` added after a
  layer; global average pool; the fc layers with biases, dropout before the classifier. bn_momentum is Flax's (the
  running statistics keep that much). Padding is TF's 'SAME' as the JAX model's: a stride-2 layer pads the extra
  pixel bottom/right. A depthwise layer with several kernel sizes is MixConv as timm's MixedConv2d does it: split
  the channels, one depthwise conv per group, concatenate. Its modules are named by the spec's layer names."""
  import torch
  from torch import nn
  import torch.nn.functional as F

  def act(name):
    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hard_swish": nn.Hardswish(), "linear": nn.Identity()}[name]

  class SamePadded(nn.Module):
    """Convs of kernel sizes `groups` ((k, channels) pairs; one for a plain conv), TF 'SAME' padded."""

    def __init__(self, layer):
      super().__init__()
      self.stride, self.kernel_size = layer.stride, layer.kernel_size
      pairs = layer.groups or ((layer.kernel_size, layer.in_channels),)
      self.splits = [channels for _, channels in pairs]
      padding = 0 if layer.stride > 1 else "same"  # stride 2: padded in forward, as TF pads
      if layer.kind == "depthwise":
        self.convs = nn.ModuleList(nn.Conv2d(c, c, k, layer.stride, padding, groups=c, bias=False) for k, c in pairs)
      else:
        self.convs = nn.ModuleList([nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                              layer.stride, padding, bias=False)])

    def forward(self, x):
      parts = torch.split(x, self.splits, 1) if len(self.convs) > 1 else (x,)
      outs = []
      for conv, part in zip(self.convs, parts):
        k = conv.kernel_size[0]
        if self.stride > 1 and k > 1:
          (top, bottom), (left, right) = (same_padding(size, k, self.stride) for size in part.shape[2:])
          part = F.pad(part, (left, right, top, bottom))
        outs.append(conv(part))
      return torch.cat(outs, 1) if len(outs) > 1 else outs[0]

  class ConvBN(nn.Sequential):
    def __init__(self, layer):
      if (layer.activation or activation) not in ACTIVATIONS:
        raise ValueError(f"layer {layer.name} has activation {layer.activation or activation!r}")
      super().__init__(SamePadded(layer), nn.BatchNorm2d(layer.out_channels, bn_epsilon, 1 - bn_momentum),
                       act(layer.activation or activation))

  class SqueezeExcite(nn.Module):
    def __init__(self, layer):
      super().__init__()
      self.reduce = nn.Linear(layer.in_channels, layer.se_channels)
      self.expand = nn.Linear(layer.se_channels, layer.out_channels)

    def forward(self, x):
      gate = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))
      return x * gate[:, :, None, None]

  class Twin(nn.Module):
    def __init__(self):
      super().__init__()
      self.features = [layer for layer in layers if layer.kind != "fc"]
      *self.hidden, self.classifier = [layer for layer in layers if layer.kind == "fc"]
      blocks = {layer.name: SqueezeExcite(layer) if layer.kind == "squeeze_excite" else ConvBN(layer)
                for layer in self.features}
      blocks.update({layer.name: nn.Linear(layer.in_channels, layer.out_channels)
                     for layer in [*self.hidden, self.classifier]})
      self.layers = nn.ModuleDict(blocks)
      self.hidden_acts = nn.ModuleList(act(layer.activation or activation) for layer in self.hidden)
      self.dropout = nn.Dropout(dropout_rate)
      self.kept = {layer.residual_from for layer in self.features if layer.residual_from}  # inputs added later

    def forward(self, x):
      inputs = {}
      for layer in self.features:
        if layer.name in self.kept:
          inputs[layer.name] = x
        x = self.layers[layer.name](x)
        if layer.residual_from:
          x = x + inputs.pop(layer.residual_from)
      x = x.mean((2, 3))
      for layer, fn in zip(self.hidden, self.hidden_acts):
        x = fn(self.layers[layer.name](x))
      return self.layers[self.classifier.name](self.dropout(x))

  return Twin()


def same_padding(size, kernel_size, stride):
  """TF 'SAME' padding (low, high) of one axis, as mnet_jax.ops.depthwise.same_padding (not imported: it pulls in
  JAX)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


def copy_weights(twin, variables, layers):
  """Sets the twin's (torch_model's) weights and BatchNorm statistics to the Flax model's `variables`."""
  import torch
  params, stats = variables["params"], variables.get("batch_stats", {})
  tensor = lambda a, *axes: torch.from_numpy(np.asarray(a, np.float32).transpose(*axes).copy())  # noqa: E731
  with torch.no_grad():
    for layer in layers:
      block, p = twin.layers[layer.name], params[layer.name]
      if layer.kind == "fc":
        block.weight.copy_(tensor(p["kernel"], 1, 0))
        block.bias.copy_(tensor(p["bias"], 0))
      elif layer.kind == "squeeze_excite":
        for part in ("reduce", "expand"):
          getattr(block, part).weight.copy_(tensor(p[part]["kernel"], 1, 0))
          getattr(block, part).bias.copy_(tensor(p[part]["bias"], 0))
      else:
        conv, bn = block[0], block[1]
        names = ["kernel"] if len(conv.convs) == 1 else [f"kernel_{i}" for i in range(len(conv.convs))]
        for module, name in zip(conv.convs, names):
          module.weight.copy_(tensor(p[name], 3, 2, 0, 1))
        bn.weight.copy_(tensor(p["bn"]["scale"], 0))
        bn.bias.copy_(tensor(p["bn"]["bias"], 0))
        bn.running_mean.copy_(tensor(stats[layer.name]["bn"]["mean"], 0))
        bn.running_var.copy_(tensor(stats[layer.name]["bn"]["var"], 0))


def setup(layers, twin_options, resolution, batch, dtype, platform_name, compile_model, peer_name, learning_rate,
          momentum):
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
    model = torch_model(layers, **twin_options).to(torch_device)
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
