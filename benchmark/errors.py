"""The one exception type the CLI turns into a single error line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a name, a value, a file. Printed as one line, never a traceback."""
