"""aimoe_lib: mixture-of-experts LLMs on 3D analog in-memory computing hardware.

Reproduces and extends Büchel et al., "Efficient scaling of large language models with mixture of
experts and 3D analog in-memory computing", Nature Computational Science 5, 13-26 (2025).

The numpy core (hardware, models, zoo, viz) never imports torch; the analog-noise work lives in
``aimoe_lib.analog``.
"""

from . import hardware, models, zoo

__all__ = ["hardware", "models", "zoo"]
__version__ = "0.1.0"
