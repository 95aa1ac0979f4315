"""The kernels the model is built from: depthwise, pointwise, the stem conv, BatchNorm, and the C++ CPU kernels."""
