"""The one exception type for user mistakes; only `gsdi.cli` turns it into exit code 2."""


class GsdiError(Exception):
    """A problem the user can fix (bad prompt, bad option, missing weights, unwritable folder).

    The message is one line and says what to do; the CLI prints it without a traceback.
    """
