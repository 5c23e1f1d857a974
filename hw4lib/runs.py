"""Sub-commands train / evaluate / generate (being written)."""


def register_cli(sub) -> None:
    pass
