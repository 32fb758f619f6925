"""The base of every error a user can act on: the command line prints it as one line and exits 2."""


class UserError(Exception):
    """A problem with something the user chose (a name, a file, a setting), described so it can be fixed."""


class ConfigError(UserError, ValueError):
    """A setting that is missing, unknown or out of range."""
