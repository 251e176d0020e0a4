"""The exceptions paretolab raises on purpose, as the public API names them (`paretolab.errors.SpecError`).

They are defined on the vocabulary floor (`paretolab.vocabulary.errors`), which every layer imports.
"""

from paretolab.vocabulary.errors import ClusterError, ParetolabError, SpecError, StoreError, UsageError

__all__ = ["ParetolabError", "SpecError", "StoreError", "UsageError", "ClusterError"]
