"""``boneage.data``: the public name of the shard pipeline, kept stable for users' code.

The code lives in :mod:`boneage.shards`; this module only re-exports its public surface, so
``from boneage.data import make_dataset`` keeps working.
"""

from boneage.shards import *  # noqa: F403  (the re-export is this module's whole job)
from boneage.shards import __all__ as __all__
