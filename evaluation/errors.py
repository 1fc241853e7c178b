class EvaluationError(Exception):
    """A QA file or evaluation run problem: names the file, line and field."""
