"""The credentials `aiaas login` stores: a server URL and an API token, in
`<config dir>/aiaas/credentials.json`, readable by its owner only (0600).

The config dir is `$XDG_CONFIG_HOME`, else `~/.config` (`%APPDATA%` on Windows). A file that
others may read is refused rather than used: a token is a password.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiaas.client.errors import AiaasClientError

FILE_MODE = 0o600


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str

    def __repr__(self) -> str:
        # Never the token in a traceback or a notebook's output.
        return f"Credentials(url={self.url!r}, token='…')"


class CredentialsError(AiaasClientError):
    """Stored credentials that cannot be used, and why."""


def config_dir() -> Path:
    """The user's config dir for aiaas."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "aiaas"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aiaas"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def store(credentials: Credentials, path: Path | None = None) -> Path:
    """Write `credentials` (replacing any) with mode 0600 from its first byte: the file is
    created private in the same directory and renamed into place."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    content = json.dumps({"url": credentials.url, "token": credentials.token})
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(path: Path | None = None) -> Credentials | None:
    """The stored credentials; None if there are none. `CredentialsError` for a file others
    may read or one that is not what `store` writes."""
    path = path or credentials_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if sys.platform != "win32" and stat.S_IMODE(mode) & 0o077:
        raise CredentialsError(
            f"{path} may be read by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}` or `aiaas login` again"
        )
    try:
        stored = json.loads(path.read_text())
        return Credentials(url=str(stored["url"]), token=str(stored["token"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(f"{path} is not a credentials file; run `aiaas login`") from exc


def forget(path: Path | None = None) -> bool:
    """Remove the stored credentials; whether there were any."""
    path = path or credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
