"""Exception classes shared by the runtime and the toolchain.

Every error cai-edge raises on purpose derives from :class:`CaiEdgeError`, so observatory
software can catch them apart from programming errors.
"""


class CaiEdgeError(Exception):
    """Base class of every error cai-edge raises on purpose."""


class CaiEdgeWarning(UserWarning):
    """Base class of every warning cai-edge gives on purpose; the command line prints them as ``warning: …``."""


class UsageError(CaiEdgeError):
    """The command line asks for something that cannot be done (an unknown name, a bad value); nothing was done."""


class CheckpointError(CaiEdgeError):
    """A model checkpoint could not be read."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks to run code (a pickled global outside the allow-list)."""


class CheckpointLayoutError(CheckpointError):
    """A checkpoint's tensors do not map onto the AstroMAE network.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    missing : list of str
        Network parameters the checkpoint does not hold.
    unexpected : list of str
        Checkpoint tensors the network has no place for.
    """

    def __init__(self, message: str, missing: list[str], unexpected: list[str]):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected


class MissingReferenceWeightsError(CaiEdgeError):
    """The project's reference weights are not available in this install."""


class ToolchainNotInstalledError(CaiEdgeError):
    """A toolchain command needs an optional dependency (torch, onnx, galsim ...)."""


class BackendUnavailableError(CaiEdgeError):
    """A backend was asked for that is not installed (``openvino``: ``pip install "cai-edge[openvino]"``)."""


class InputError(CaiEdgeError, ValueError):
    """One galaxy's input is unusable; ``status`` is the machine-readable code written to output rows.

    A ``ValueError``, so code that catches bad values catches it too.

    Parameters
    ----------
    status : str
        The row status (``bad_shape``, ``wrong_units``, ``missing_magnitudes`` …; see
        :mod:`cai_edge.io.status`).
    message : str
        What is wrong, naming the rows or the file, for a person.
    """

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class BundleError(CaiEdgeError):
    """A model bundle cannot be used."""


class TamperedBundleError(BundleError):
    """A bundle file's size or sha256 differs from its manifest."""


class UnsupportedBundleError(BundleError):
    """A bundle's schema version is newer than this cai-edge understands (or absent)."""


class UnsafeBundlePathError(BundleError):
    """A bundle names a file outside itself (absolute path, ``..``: zip slip)."""


class BundleNotFoundError(BundleError):
    """No bundle of that name or path."""


class BundleInterfaceError(BundleError):
    """A bundle's model does not have the runtime's interface (input/output names, dtypes, ranks, batch axis)."""


class ModelOutputError(BundleError):
    """The model returned something other than one float32 redshift per galaxy."""
