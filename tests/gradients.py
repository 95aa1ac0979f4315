"""What the kernel-set tests of whole networks share: the training-mode loss and parameter gradients of a module on
a batch, the distance between two gradient trees, and the float32 rounding of the same problem to hold it against.

A network at its initial weights in training mode is ill-conditioned: its last BatchNorms normalise a few values
per channel, and the gradients through them amplify rounding by an amount that depends on the CPU's summation
orders. So two kernel sets are held against the spread of one of them under another order of the same sum (the
batch reversed), not against a fixed bound tuned on one CPU (figures: docs/training.md, "What is exact and what
is float noise").
"""

import jax
import jax.numpy as jnp


def gradients_function(module, variables):
  """A jitted (images, labels) -> (loss, gradients w.r.t. the params) of `module` in training mode at `variables`:
  softmax cross-entropy, BatchNorm on the batch's statistics, no dropout key (build the module without dropout)."""
  def loss(params, images, labels):
    logits, _ = module.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
  return jax.jit(lambda images, labels: jax.value_and_grad(loss)(variables["params"], images, labels))


def tree_error(grads, reference):
  """The largest over leaves of a leaf's error norm over its own norm, floored at 1e-3 of the largest leaf's norm
  (leaves whose gradient is zero up to rounding, e.g. BatchNorm biases before the next BatchNorm, would compare
  rounding noise)."""
  floor = 1e-3 * max(float(jnp.linalg.norm(r)) for r in jax.tree.leaves(reference))
  return max(float(jnp.linalg.norm(g.astype(jnp.float32) - r) / (jnp.linalg.norm(r) + floor))
             for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True))


def rounding_spread(gradients, images, labels, grads):
  """tree_error of `gradients` (gradients_function's) on the batch in reverse order against `grads`, its result on
  the batch in order: the same sum in another order, so float32 rounding alone, through this network."""
  return tree_error(gradients(images[::-1], labels[::-1])[1], grads)


def kernel_sets_agree(grads, reference, spread):
  """Whether gradient trees `grads` and `reference` agree within twice the `spread` of rounding_spread, and within
  1e-3 wherever that spread is smaller."""
  return tree_error(grads, reference) < max(1e-3, 2 * spread)
