"""expert-ensemble: write one long document with a team of topic experts.

The public API is the stage entry functions; importing this package loads no torch.
"""

from .config import ProjectConfig, load_project
from .core.errors import ArtifactError, BackendError, ConfigError, CorpusError, EnsembleError

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "BackendError",
    "ConfigError",
    "CorpusError",
    "EnsembleError",
    "ProjectConfig",
    "__version__",
    "load_project",
]
