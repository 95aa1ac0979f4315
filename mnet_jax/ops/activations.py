"""Hard-sigmoid and hard-swish (MobileNet V3, Keras' forms): hard_sigmoid(x) = ReLU6(x + 3) / 6, hard_swish(x) =
x * hard_sigmoid(x). Written as Keras writes them so that the gradient at the kinks is the same."""

import jax


def hard_sigmoid(x):
  return jax.nn.relu6(x + 3.0) * (1.0 / 6.0)


def hard_swish(x):
  return x * hard_sigmoid(x)
