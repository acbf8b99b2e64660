"""emgeo: the package behind the course *Fine-tuning is not local*.

Importing it has no side effects; notebooks call :func:`emgeo.setup` once.
"""

from emgeo.config import Profile, get_profile, setup
from emgeo.errors import ProfileError

__all__ = ["Profile", "ProfileError", "get_profile", "setup"]
__version__ = "0.1.0"
