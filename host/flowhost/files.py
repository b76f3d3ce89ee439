"""Reading the small files a flag names (a token file, a certificate, a spec to submit) with
a bound: ``/dev/zero``, or a log given by mistake, is refused before it fills the memory."""

from __future__ import annotations

from pathlib import Path

from flowhost.problems import UserInputError, shorten

MAX_TOKEN_FILE_BYTES = 64 * 1024  # many name:token lines; never megabytes
MAX_PEM_BYTES = 1024 * 1024  # a certificate chain, a key, a bundle of CAs
MAX_SPEC_BYTES = 2 * 1024 * 1024  # a spec the daemon takes (SubmitRun), and submit reads


def read_bounded(path: str | Path, limit: int, *, flag: str | None, what: str) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them; a ``UserInputError`` naming the flag
    and the file (shortened) when it cannot be read or is longer. ``what`` says what the
    file should be, for the message of a file too long: "a token file"."""
    subject = _subject(path, flag)
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:  # its text without the path again: the message names the file
        raise UserInputError(f"{subject}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UserInputError(f"{subject}: larger than {limit:,} bytes: not {what}")
    return data


def read_bounded_text(path: str | Path, limit: int, *, flag: str | None, what: str) -> str:
    """``read_bounded`` decoded as UTF-8."""
    data = read_bounded(path, limit, flag=flag, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{_subject(path, flag)}: cannot read it (not UTF-8 text: "
                             f"{exc.reason} at byte {exc.start:,})") from None


def _subject(path: str | Path, flag: str | None) -> str:
    return f"{flag} {shorten(str(path))}" if flag else shorten(str(path))
