"""The exceptions paretolab raises on purpose.

Every error a user can cause is a `ParetolabError`; the CLI prints its message as one line on
stderr and exits with status 2. Anything else escaping is a bug.
"""


class ParetolabError(Exception):
    """Root of every error paretolab raises for bad input or an unusable environment."""


class SpecError(ParetolabError):
    """A sweep spec is malformed: the message names the file, the key, the value and what is allowed."""


class StoreError(ParetolabError):
    """The result store cannot be opened, locked, read or written."""


class UsageError(ParetolabError):
    """A command-line or API argument is invalid."""


class ClusterError(ParetolabError):
    """Ray could not be started or reached."""
