"""The base of every error a user can cause: the shells catch it, print it and its hint, exit 2.

Library errors name the problem in their message; ``hint`` names what to do next in the
library's own terms. The command line and the server add their flag or HTTP status to it.
"""

from __future__ import annotations


class AedrError(Exception):
    """A problem with the input, the set-up or the settings that the user can fix."""

    hint: str = ""

    def __init__(self, message: str = "", hint: str = ""):
        super().__init__(message)
        if hint:
            self.hint = hint
