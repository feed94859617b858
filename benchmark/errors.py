"""The exceptions the CLI turns into one line: UserError (exit code 2) and Stopped (a scheduler's signal)."""


class UserError(Exception):
    """Bad input from the user: a name, a value, a file. Printed as one line, never a traceback."""


class Stopped(Exception):
    """Training stopped at a signal after saving its resume point; the CLI prints the message and exits with
    128 + the signal's number, as a process the signal had ended would."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
