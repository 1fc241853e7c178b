class AssistantError(Exception):
    """A request the assistant cannot serve (unknown mode or adapter, bad settings, backend down)."""
