"""torch → ONNX export of AstroMAE into verified bundles (toolchain; imports torch lazily)."""
