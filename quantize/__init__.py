"""ONNX → fp16 / int8 quantization of bundles, gated on photo-z accuracy (toolchain)."""
