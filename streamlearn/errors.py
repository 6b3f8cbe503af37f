"""The exceptions streamlearn raises, under one root.

Every error a user can cause (a bad configuration, an unreachable service) is one of these,
and the CLI prints its message instead of a traceback.
"""

from __future__ import annotations


class StreamlearnError(Exception):
    """Root of every error streamlearn raises on purpose."""


class ConfigError(StreamlearnError):
    """The configuration is invalid; the message names the key and what was expected."""


class ModelError(StreamlearnError):
    """A model named in the configuration cannot be built or does not fit the task."""


class ServiceUnavailable(StreamlearnError):
    """A broker, Redis or another service could not be reached after retrying."""


class CredentialsRefused(StreamlearnError):
    """Credentials were refused (or a TLS certificate not trusted): retrying cannot help."""


class OutputBackpressure(StreamlearnError):
    """A sink cannot take more output right now; the runner pauses consumption and retries."""


class OutputRejected(StreamlearnError):
    """A sink refused output for good (too large, wrong type in Redis): retrying cannot help."""


class ShutdownTimeout(StreamlearnError):
    """Outputs were still failing when the shutdown grace period ran out; nothing was committed."""


class PipelineFenced(StreamlearnError):
    """Another process holds this pipeline's lock: this one must stop writing and exit."""
