"""cai-edge: run the AstroMAE galaxy-redshift model anywhere.

The runtime in this package needs only numpy, onnxruntime, astropy and tqdm; it never
imports torch. The build toolchain (``cai_edge.models``, ``cai_edge.export``,
``cai_edge.quantize``) may import torch, lazily, inside the commands that need it.
"""

from cai_edge._version import __version__

__all__ = ["__version__"]
