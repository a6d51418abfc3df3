"""`entload run` (not built yet: see the open issue)."""

HELP = "(not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    from entload.errors import UsageError

    raise UsageError("this command is not built yet")
