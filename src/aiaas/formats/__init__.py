"""Model formats: how a trained model is stored, beneath the plugins that write and read it.

A format is the contract between a trainer, which writes a model version's bundle, and a serving
runtime, which loads it. It lives here rather than in either plugin, so that built-in plugins
never import each other (a third-party runtime can read a built-in format just as well).
Formats import only the kernel, `aiaas.core`.

    flax_nnx            the flax-nnx bundle: msgpack weights, preprocessing and signature
    flax_nnx_features   its feature encoding, shared by training and prediction
    flax_nnx_models     its model architectures (Flax NNX; imports JAX)
"""
