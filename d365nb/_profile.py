"""Named connection profiles in a per-user TOML file, never holding a secret or a token.

The file (default `platformdirs.user_config_dir("d365nb")/profiles.toml`, or the path in
`D365NB_CONFIG`) looks like this:

```toml
[profiles.work]
service_url = "https://contoso.crm.dynamics.com"
client_id = "00001111-aaaa-2222-bbbb-3333cccc4444"
tenant = "contoso.onmicrosoft.com"
```

Secrets come from environment variables (`D365NB_CLIENT_SECRET`, ...) or arguments; a
file that holds one is refused rather than read, so that it gets cleaned up.  The file is
written atomically with mode 0600, and a folder created for it gets 0700.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from ._exceptions import ConfigError
from ._fields import ENV_CONFIG, ENV_PREFIX, FIELDS, SECRET_FIELDS, unknown_field
from ._tokencache import private_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["default_profile_path", "list_profiles"]

_TABLE = "profiles"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Any key that smells of a credential is refused, whatever its spelling.
_SECRET_WORDS = re.compile(r"secret|password|passwd|token(?!_?ur[il])", re.I)


def default_profile_path(environ: Mapping[str, str] | None = None) -> Path:
    """The profile file: `D365NB_CONFIG` if set, else `<user config dir>/d365nb/profiles.toml`.

    **Parameters:**

    * **environ** - the environment to read; `os.environ` when omitted.
    """
    env = os.environ if environ is None else environ
    override = (env.get(ENV_CONFIG) or "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("d365nb", appauthor=False)) / "profiles.toml"


def _path(path: str | os.PathLike[str] | None) -> Path:
    return default_profile_path() if path is None else Path(path).expanduser()


def list_profiles(*, path: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of the saved profiles, sorted; empty when there is no file yet.

    **Parameters:**

    * **path** - the profile file; `D365NB_CONFIG` or the per-user default when omitted.
    """
    return sorted(_read(_path(path)))


def load_profile(name: str, *, path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The fields saved under `name`; `ConfigError` (field `profile`) if there is none."""
    file = _path(path)
    profiles = _read(file)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none yet"
        raise ConfigError(
            f"There is no profile {name!r} in {file}.",
            field="profile",
            hint=f"Saved profiles: {known}. Save one with settings.save_profile({name!r}).",
        )
    return dict(profiles[name])


def write_profile(
    name: str, values: Mapping[str, str], *, path: str | os.PathLike[str] | None = None
) -> Path:
    """Store `values` (secrets dropped) as profile `name`; other profiles are kept."""
    if not _NAME.match(name):
        raise ConfigError(
            f"Profile name {name!r} is not usable.",
            field="profile",
            hint="Use letters, digits, '_', '-' and '.' only, e.g. 'work' or 'sandbox'.",
        )
    file = _path(path)
    document = _load_document(file) if file.exists() else {}
    _validate(document, file)
    table = dict(document.get(_TABLE, {}))
    table[name] = {k: v for k, v in values.items() if k in FIELDS and k not in SECRET_FIELDS}
    document = {**document, _TABLE: table}

    data = tomli_w.dumps(document).encode()
    folder = file.parent
    if not folder.exists():
        private_dir(folder)  # it and every missing parent 0700, whatever the umask
    # mkstemp creates the file with mode 0600; os.replace makes the write atomic.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".profiles-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def _load_document(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            document: dict[str, Any] = tomllib.load(handle)
            return document
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The profile file {file} is not valid TOML: {exc}.",
            field="profile",
            hint="Fix or delete the file; it is plain text.",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"The profile file {file} cannot be read: {exc.strerror}.",
            field="profile",
            hint="Check its permissions, or point D365NB_CONFIG at another file.",
        ) from None


def _read(file: Path) -> dict[str, dict[str, str]]:
    """All profiles in `file`, each checked; {} when the file does not exist."""
    if not file.exists():
        return {}
    document = _load_document(file)
    return _validate(document, file)


def _validate(document: Mapping[str, Any], file: Path) -> dict[str, dict[str, str]]:
    table = document.get(_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"In {file}, {_TABLE!r} is not a table.",
            field="profile",
            hint=f"Write each profile as a [{_TABLE}.<name>] table.",
        )
    profiles: dict[str, dict[str, str]] = {}
    for name, entries in table.items():
        if not isinstance(entries, dict):
            raise ConfigError(
                f"In {file}, profile {name!r} is not a table.",
                field="profile",
                hint=f"Write it as a [{_TABLE}.{name}] table of settings.",
            )
        profile: dict[str, str] = {}
        for key, value in entries.items():
            if key in SECRET_FIELDS or _SECRET_WORDS.search(key):
                env = ENV_PREFIX + (key if key in SECRET_FIELDS else "CLIENT_SECRET").upper()
                # Only the key is named: the value must never reach a message.
                raise ConfigError(
                    f"Profile {name!r} in {file} holds {key}; profiles never store secrets "
                    "or tokens.",
                    field=key,
                    hint=f"Remove that line from the file and set {env} in the environment "
                    f"instead (or pass {key}= in code).",
                )
            if key not in FIELDS:
                err = unknown_field(key)
                raise ConfigError(
                    f"Profile {name!r} in {file}: unknown setting {key!r}.",
                    field=key,
                    hint=err.hint,
                )
            if key == "api_version" and isinstance(value, int | float):
                value = f"{value:.1f}"  # `api_version = 9.2` written without quotes
            if not isinstance(value, str):
                raise ConfigError(
                    f"Profile {name!r} in {file}: {key} must be text.",
                    field=key,
                    hint=f'Write it in quotes: {key} = "..."',
                )
            profile[key] = value
        profiles[str(name)] = profile
    return profiles
