"""The one error tree of edgepack.

The CLI maps these to exit codes (see ``edgepack.cli.main``): ``GateFailed`` and
``VerifyFailed`` → 1, ``ConfigError`` / ``SourceError`` / ``PassError`` /
``BundleError`` and other usage errors → 2, ``TransportError`` → 3.
Messages follow the contract ``<what is wrong> — <what to do>``.
"""

from __future__ import annotations


class EdgepackError(Exception):
    """Base of every error edgepack raises on purpose."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)


class ConfigError(EdgepackError):
    """A profile, target or option is invalid."""


class SourceError(EdgepackError):
    """The model source (folder, .onnx, calibration data) is missing or unusable."""


class PassError(EdgepackError):
    """An optimization pass could not do its work on this model."""


class BudgetExceeded(PassError):
    """The packaged model is larger than the profile allows."""


class BundleError(EdgepackError):
    """A bundle cannot be written or read."""


class BuildError(EdgepackError):
    """A runtime build (minimal ONNX Runtime) failed or cannot start."""


class BoardError(EdgepackError):
    """A virtual board cannot be created, started or stopped."""


class GateFailed(EdgepackError):
    """A measured value is outside the profile's gate (exit 1)."""

    exit_code = 1


class VerifyFailed(EdgepackError):
    """A bundle member does not match its recorded hash (exit 1)."""

    exit_code = 1


class TransportError(EdgepackError):
    """A target could not be reached or a command/transfer on it failed (exit 3)."""

    exit_code = 3


class ConnectError(TransportError):
    """The connection to a target could not be made or was lost."""


class HostKeyError(ConnectError):
    """The target's host key is unknown or changed; never auto-accepted."""


class CommandFailed(TransportError):
    """A command on the target exited non-zero."""

    def __init__(
        self, what: str, fix: str | None = None, *, exit_status: int = 1, stdout: str = "", stderr: str = ""
    ) -> None:
        super().__init__(what, fix)
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr


class TransferError(TransportError):
    """A file transfer to or from the target failed."""


class PreflightFailed(EdgepackError):
    """The target cannot run this bundle (arch, ISA, glibc, disk, memory); nothing was sent."""
