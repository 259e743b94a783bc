"""Transports: how commands run and files move on a target (``base`` protocol, ``ssh``, ``local``)."""

from edgepack.transports.base import RemoteStat, Result, Transport

__all__ = ["RemoteStat", "Result", "Transport"]
