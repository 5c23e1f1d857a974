"""The one exception type for bad input: the CLI prints its message without a traceback."""


class HW4Error(Exception):
    """Bad input (a missing data file, a checksum mismatch, a checkpoint of another model).

    The message must say what is wrong and what command fixes it.
    """
