"""Device profiles: what a target device is and what a bundle for it must satisfy."""

from edgepack.profiles.loader import available, load, load_file
from edgepack.profiles.model import Profile

__all__ = ["Profile", "available", "load", "load_file"]
