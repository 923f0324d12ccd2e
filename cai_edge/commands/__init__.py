"""Runtime sub-commands of ``cai-edge`` (torch-free); argument definitions live in ``cai_edge.cli``."""
