class RetrievalError(Exception):
    """A knowledge-base problem the user can act on (missing KB, bad query, inconsistent store)."""


class KBLockedError(RetrievalError):
    """Another process is writing to the knowledge base."""
