"""What agents need from the world, as small Protocols and types; ``ops/`` supplies the implementations.

Agents depend on these, never on how they are opened: a unit test drives an agent's ``handle`` with
in-memory fakes of them, and the composition root (``ops/``) passes the real ones as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Similarity = Callable[[np.ndarray], np.ndarray]
"""The one cosine -> confidence calibration: cosine similarities of L2-normalised descriptors (an array of
any shape) -> confidence in [0, 1] that each pair is one person (same shape). Every threshold documented "in
confidence units" (matching, episodes, deduplication) is compared to its output, never to a raw cosine.
The real one is ``models.faces.confidences``."""
