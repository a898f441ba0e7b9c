"""soundclr: a reproducible companion to SoundCLR (Nasiri & Hu), supervised
contrastive learning for environmental sound classification."""
from .config import Config, ConfigError, preset

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "preset", "__version__"]
