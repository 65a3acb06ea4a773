"""Named profiles: saved without secrets, owner-only on disk, refused if they hold one."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from d365nb._config import Settings
from d365nb._exceptions import ConfigError
from d365nb._profile import default_profile_path, list_profiles

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
PUBLIC = "00001111-aaaa-2222-bbbb-3333cccc4444"
CONFIDENTIAL = "11112222-bbbb-3333-cccc-4444dddd5555"
ORG = "https://org.crm.dynamics.com"
TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
SECRET = "S3cr3t~Zebra.991_xyz"
ACCESS = "eyJ0eXAi.AccessTok-Quokka-4242"
REFRESH = "0.ARefresh-Narwhal-7777"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("D365NB_"):
            monkeypatch.delenv(key)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "profiles.toml"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_save_and_load_round_trip_without_secrets(path: Path):
    settings = Settings(
        service_url=ORG,
        client_id=CONFIDENTIAL,
        client_secret=SECRET,
        access_token=ACCESS,
        refresh_token=REFRESH,
        token_uri=f"POST {TOKEN}",
        scope=f"{ORG}/user_impersonation",
        redirect_uri="http://localhost",
        grant="auth_code",
        api_version="9.1",
    )
    assert settings.save_profile("work", path=path) == path
    raw = path.read_bytes()
    for secret in (SECRET, ACCESS, REFRESH):
        assert secret.encode() not in raw
    document = tomllib.loads(raw.decode())
    assert set(document["profiles"]["work"]) == {
        "service_url", "client_id", "token_uri", "scope", "redirect_uri", "grant", "api_version",
    }  # fmt: skip
    loaded = Settings.from_profile("work", path=path)
    assert loaded == settings.replace(client_secret=None, access_token=None, refresh_token=None)
    assert loaded.secrets() == ()


def test_only_given_values_are_saved_and_the_implied_grant_is_kept(path: Path):
    Settings(service_url=ORG, client_id=CONFIDENTIAL, client_secret=SECRET, tenant=TENANT
             ).save_profile("app", path=path)  # fmt: skip
    saved = tomllib.loads(path.read_text())["profiles"]["app"]
    assert saved == {
        "service_url": ORG,
        "client_id": CONFIDENTIAL,
        "tenant": TENANT,
        "grant": "client_credentials",
    }
    # Loading it alone says which secret is missing and where to put it.
    with pytest.raises(ConfigError) as info:
        Settings.from_profile("app", path=path)
    assert info.value.field == "client_secret"
    assert "D365NB_CLIENT_SECRET" in (info.value.hint or "")
    # With the secret from the environment it is complete again.
    environ = {"D365NB_CONFIG": str(path), "D365NB_CLIENT_SECRET": SECRET}
    assert Settings.resolve(profile="app", environ=environ).client_secret == SECRET


def test_file_is_0600_and_new_folder_is_0700(path: Path):
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("p", path=path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["profiles.toml"]  # no temp file left


def test_rewriting_keeps_other_profiles_and_tightens_the_mode(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text(f'title = "mine"\n[profiles.old]\nservice_url = "{ORG}"\n')
    os.chmod(path, 0o644)
    os.chmod(tmp_path, 0o755)
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("new", path=path)
    assert mode(path) == 0o600
    assert mode(tmp_path) == 0o755  # an existing folder is not the library's to change
    document = tomllib.loads(path.read_text())
    assert document["title"] == "mine"
    assert set(document["profiles"]) == {"old", "new"}


def test_saving_again_replaces_the_profile(path: Path):
    Settings(service_url=ORG, client_id=PUBLIC, tenant=TENANT).save_profile("p", path=path)
    Settings(service_url=ORG, client_id=CONFIDENTIAL).save_profile("p", path=path)
    loaded = Settings.from_profile("p", path=path)
    assert loaded.client_id == CONFIDENTIAL
    assert loaded.tenant is None


def test_list_profiles(path: Path):
    assert list_profiles(path=path) == []
    for name in ("zeta", "alpha", "mid-1"):
        Settings(service_url=ORG, client_id=PUBLIC).save_profile(name, path=path)
    assert list_profiles(path=path) == ["alpha", "mid-1", "zeta"]


@pytest.mark.parametrize(
    ("key", "env"),
    [
        ("client_secret", "D365NB_CLIENT_SECRET"),
        ("access_token", "D365NB_ACCESS_TOKEN"),
        ("refresh_token", "D365NB_REFRESH_TOKEN"),
        ("ClientSecret", "D365NB_CLIENT_SECRET"),
        ("password", "D365NB_CLIENT_SECRET"),
    ],
)
def test_a_file_holding_a_secret_is_refused(tmp_path: Path, key: str, env: str):
    path = tmp_path / "profiles.toml"
    path.write_text(
        f'[profiles.clean]\nservice_url = "{ORG}"\n'
        f'[profiles.leaky]\nservice_url = "{ORG}"\n{key} = "{SECRET}"\n'
    )
    for action in (
        lambda: Settings.from_profile("leaky", path=path),
        lambda: Settings.from_profile("clean", path=path),  # the whole file is refused
        lambda: list_profiles(path=path),
        lambda: Settings(service_url=ORG, client_id=PUBLIC).save_profile("x", path=path),
    ):
        with pytest.raises(ConfigError) as info:
            action()
        err = info.value
        assert err.field == key
        assert "never store" in err.message
        assert "leaky" in err.message
        assert env in (err.hint or "") and "Remove" in (err.hint or "")
        assert SECRET not in str(err) and SECRET not in repr(err)
    assert SECRET in path.read_text()  # refused, not silently rewritten


def test_token_uri_is_not_mistaken_for_a_token(tmp_path: Path):
    path = tmp_path / "profiles.toml"
    path.write_text(f'[profiles.p]\nservice_url = "{ORG}"\nclient_id = "{PUBLIC}"\n'
                    f'token_uri = "POST {TOKEN}"\napi_version = 9.1\n')  # fmt: skip
    settings = Settings.from_profile("p", path=path)
    assert settings.token_uri == TOKEN
    assert settings.api_version == "9.1"  # a bare TOML number is read as the version


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        (f'[profiles.p]\nservce_url = "{ORG}"\n', "servce_url", "Did you mean service_url?"),
        ("[profiles.p]\nclient_id = 5\n", "client_id", "quotes"),
        ("[profiles.p\n", "profile", "TOML"),
        ('profiles = "x"\n', "profile", "[profiles.<name>]"),
        ('[profiles]\np = "x"\n', "profile", "[profiles.p]"),
    ],
)
def test_malformed_files(tmp_path: Path, body: str, field: str, text: str):
    path = tmp_path / "profiles.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        Settings.from_profile("p", path=path)
    assert info.value.field == field
    assert text in str(info.value)


def test_missing_profile_lists_the_known_ones(path: Path):
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("work", path=path)
    with pytest.raises(ConfigError) as info:
        Settings.from_profile("wrok", path=path)
    assert info.value.field == "profile"
    assert "work" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="none yet"):
        Settings.from_profile("x", path=path.parent / "absent.toml")


@pytest.mark.parametrize("name", ["", "two words", "a/b", "ünï"])
def test_bad_profile_names(path: Path, name: str):
    with pytest.raises(ConfigError) as info:
        Settings(service_url=ORG, client_id=PUBLIC).save_profile(name, path=path)
    assert info.value.field == "profile"
    assert not path.exists()


def test_d365nb_config_overrides_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    target = tmp_path / "elsewhere.toml"
    monkeypatch.setenv("D365NB_CONFIG", str(target))
    assert default_profile_path() == target
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("env")
    assert target.exists()
    assert list_profiles() == ["env"]
    assert Settings.from_profile("env").client_id == PUBLIC
    monkeypatch.setenv("D365NB_PROFILE", "env")
    assert Settings.from_env().client_id == PUBLIC


def test_default_path_is_the_user_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import platformdirs

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # honoured on Linux
    expected = Path(platformdirs.user_config_dir("d365nb", appauthor=False)) / "profiles.toml"
    assert default_profile_path() == expected
    assert default_profile_path({"D365NB_CONFIG": "~/x.toml"}) == Path("~/x.toml").expanduser()
    assert default_profile_path({"D365NB_CONFIG": "  "}) == expected


def test_resolve_reads_the_profile_named_in_the_environment(path: Path):
    Settings(service_url=ORG, client_id=PUBLIC, tenant=TENANT).save_profile("a", path=path)
    Settings(service_url=ORG, client_id=CONFIDENTIAL).save_profile("b", path=path)
    environ = {"D365NB_CONFIG": str(path), "D365NB_PROFILE": "a"}
    assert Settings.resolve(environ=environ).client_id == PUBLIC
    assert Settings.resolve(environ=environ, profile="b").client_id == CONFIDENTIAL
    with pytest.raises(ConfigError) as info:
        Settings.resolve(environ={**environ, "D365NB_PROFILE": "c"})
    assert info.value.field == "profile"


def test_an_explicit_environ_also_decides_the_profile_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    process_file, given_file = tmp_path / "process.toml", tmp_path / "given.toml"
    Settings(service_url=ORG, client_id=PUBLIC).save_profile("p", path=process_file)
    Settings(service_url=ORG, client_id=CONFIDENTIAL).save_profile("p", path=given_file)
    monkeypatch.setenv("D365NB_CONFIG", str(process_file))
    environ = {"D365NB_CONFIG": str(given_file)}
    assert Settings.resolve(environ=environ, profile="p").client_id == CONFIDENTIAL
    assert Settings.resolve(profile="p").client_id == PUBLIC
