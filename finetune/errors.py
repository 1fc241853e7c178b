class DatasetError(Exception):
    """A training file that cannot be used: names the file, line and field."""


class TrainError(Exception):
    """A training run or adapter problem the user can act on."""
