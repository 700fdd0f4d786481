"""Planted profiles and credential files (issue 22, item 8). The CLI wrote a profile through
`<name>.tmp` opened with O_CREAT|O_TRUNC (no O_EXCL, no O_NOFOLLOW) and loaded profiles
without looking at owner or mode: with `--profile` in a directory another user could write, a
`.tmp` file planted there made the operator's profile that user's, who pointed it at a
listener of theirs, and the operator's next command sent the operator's client secret there;
a symbolic link planted at the temporary name overwrote its target.

Files of secrets (profiles, the operator's and platform credentials, master keys, speech's
key ring, database passwords, development TLS keys) are now read and written by
rpckit.keyfiles as ssh treats its own: refused when the file or a directory above it is
another user's or open to others (sticky directories like /tmp excepted), created under a
random name with O_EXCL|O_NOFOLLOW, mode 0600, synced and renamed into place, never through a
link. "Another user" is a uid that is neither ours (effective) nor root's: the tests run as
root, so they give files to another uid with os.chown, and are skipped where that needs root."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from cmk_trio.cli.main import main as cmk_main
from cmk_trio.cli.profile import Profile
from cmk_trio.client.identity import ClientCredentials
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.devca import ensure_dev_pki, issue_copy
from cmk_trio.rpckit.keyfiles import PrivateFileRefused, read_or_create_key, write_private_file
from cmk_trio.rpckit.storage.roles import make_secrets

OTHER_UID = 54321
"""A uid of nobody on this machine: the other user who plants files."""

ATTACKER_PROFILE = {"identity_endpoint": "127.0.0.1:9", "tenant_id": "t", "client_id": "c", "tokens": {}}


@pytest.fixture
def as_root() -> None:
    """Giving a file to another uid takes root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")


def a_profile() -> Profile:
    return Profile(identity_endpoint="127.0.0.1:50051", tenant_id="tenant", client_id="client")


def directory(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


def planted(path: Path, content: str, *, uid: int = OTHER_UID, mode: int = 0o666) -> Path:
    path.write_text(content)
    path.chmod(mode)
    os.chown(path, uid, -1)
    return path


def mine(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600


# --- writing a profile ---------------------------------------------------------------------


@pytest.mark.usefixtures("as_root")
def test_a_planted_tmp_file_does_not_make_the_profile_another_users(tmp_path):
    """The attack of the issue in a shared directory that is sticky (as /tmp is): the file
    planted under the old temporary name is left alone; the profile is a new file of ours."""
    shared = directory(tmp_path / "shared", 0o1777)
    trap = planted(shared / "operator.tmp", json.dumps(ATTACKER_PROFILE))
    a_profile().save(shared / "operator.json")
    assert mine(shared / "operator.json")
    assert json.loads((shared / "operator.json").read_text())["identity_endpoint"] == "127.0.0.1:50051"
    assert trap.stat().st_uid == OTHER_UID and json.loads(trap.read_text()) == ATTACKER_PROFILE
    assert sorted(p.name for p in shared.iterdir()) == ["operator.json", "operator.tmp"]  # no temporary left


def test_a_profile_is_not_written_into_a_directory_others_may_write(tmp_path):
    """Not sticky: anyone may rename or replace any file there, so nothing of ours is safe."""
    shared = directory(tmp_path / "shared", 0o777)
    with pytest.raises(PrivateFileRefused) as refused:
        a_profile().save(shared / "operator.json")
    assert str(shared) in str(refused.value) and "chmod go-w" in str(refused.value)
    assert list(shared.iterdir()) == []


def test_a_symbolic_link_at_the_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    home = directory(tmp_path / "home", 0o700)
    (home / "operator.tmp").symlink_to(victim)
    a_profile().save(home / "operator.json")
    assert victim.read_text() == "precious\n"
    assert mine(home / "operator.json")


def test_a_symbolic_link_at_the_profile_name_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    home = directory(tmp_path / "home", 0o700)
    (home / "operator.json").symlink_to(victim)
    with pytest.raises(PrivateFileRefused) as refused:
        a_profile().save(home / "operator.json")
    assert "symbolic link" in str(refused.value)
    assert victim.read_text() == "precious\n" and (home / "operator.json").is_symlink()


@pytest.mark.usefixtures("as_root")
def test_another_users_file_at_the_profile_name_is_not_replaced(tmp_path):
    shared = directory(tmp_path / "shared", 0o1777)
    theirs = planted(shared / "operator.json", json.dumps(ATTACKER_PROFILE), mode=0o600)
    with pytest.raises(PrivateFileRefused):
        a_profile().save(theirs)
    assert theirs.stat().st_uid == OTHER_UID


def test_a_profile_is_written_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        a_profile().save(tmp_path / "cmk" / "operator.json")
        a_profile().save(tmp_path / "cmk" / "operator.json")  # replaced, still 0600
    finally:
        os.umask(old)
    assert mine(tmp_path / "cmk" / "operator.json")
    assert stat.S_IMODE((tmp_path / "cmk").stat().st_mode) == 0o700


# --- reading a profile ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604])
def test_a_profile_open_to_others_is_refused(tmp_path, mode):
    path = tmp_path / "operator.json"
    a_profile().save(path)
    path.chmod(mode)
    with pytest.raises(PrivateFileRefused) as refused:
        Profile.load(path)
    assert f"chmod 600 {path}" in str(refused.value) and f"{mode:04o}" in str(refused.value)


@pytest.mark.usefixtures("as_root")
def test_a_profile_of_another_user_is_refused(tmp_path):
    path = planted(tmp_path / "operator.json", json.dumps(ATTACKER_PROFILE), mode=0o600)
    with pytest.raises(PrivateFileRefused) as refused:
        Profile.load(path)
    assert str(path) in str(refused.value) and f"uid {OTHER_UID}" in str(refused.value)


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("where", ["parent", "grandparent"])
def test_a_profile_under_a_directory_of_another_user_is_refused(tmp_path, where):
    top = directory(tmp_path / "top", 0o755)
    home = directory(top / "home", 0o700)
    a_profile().save(home / "operator.json")
    os.chown(home if where == "parent" else top, OTHER_UID, -1)
    with pytest.raises(PrivateFileRefused) as refused:
        Profile.load(home / "operator.json")
    assert f"uid {OTHER_UID}" in str(refused.value)


def test_a_profile_under_a_directory_others_may_write_is_refused(tmp_path):
    home = directory(tmp_path / "home", 0o700)
    a_profile().save(home / "operator.json")
    home.chmod(0o777)
    with pytest.raises(PrivateFileRefused):
        Profile.load(home / "operator.json")


@pytest.mark.usefixtures("as_root")
def test_group_write_is_refused_unless_the_group_is_the_users_own(tmp_path):
    """As Debian's ssh: a user-private group (named as the user, no other members: root's
    here) writing is the user writing; any other group is other users."""
    home = directory(tmp_path / "home", 0o770)
    os.chown(home, -1, 0)
    a_profile().save(home / "operator.json")
    assert Profile.load(home / "operator.json") is not None
    os.chown(home, -1, OTHER_UID)
    with pytest.raises(PrivateFileRefused) as refused:
        Profile.load(home / "operator.json")
    assert "(mode 0770)" in str(refused.value)


def test_a_profile_reached_through_a_link_is_checked_where_it_leads(tmp_path):
    shared = directory(tmp_path / "shared", 0o777)
    home = directory(tmp_path / "home", 0o700)
    (home / "cmk").symlink_to(shared, target_is_directory=True)
    (shared / "operator.json").write_text(json.dumps(ATTACKER_PROFILE))
    (shared / "operator.json").chmod(0o600)
    with pytest.raises(PrivateFileRefused) as refused:
        Profile.load(home / "cmk" / "operator.json")
    assert f"{home / 'cmk'} (a link to {shared})" in str(refused.value)


def test_a_profile_that_is_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "operator.json", 0o600)
    with pytest.raises(PrivateFileRefused):  # at once: a FIFO does not hang the open
        Profile.load(tmp_path / "operator.json")


def test_a_private_profile_loads_in_a_sticky_directory_and_in_a_private_one(tmp_path):
    for place in (directory(tmp_path / "sticky", 0o1777), directory(tmp_path / "private", 0o700)):
        a_profile().save(place / "operator.json")
        loaded = Profile.load(place / "operator.json")
        assert loaded is not None and loaded.identity_endpoint == "127.0.0.1:50051"
    assert Profile.load(tmp_path / "none.json") is None


# --- the CLI: a planted profile is not followed, and the refusal is one line with its reason --


def refused_before_reaching(listener: socket.socket, argv: list[str]) -> int:
    """`cmk ARGV`'s exit code, checking that no connection came to the attacker's `listener`
    (closed after)."""
    try:
        with pytest.raises(SystemExit) as exited:
            cmk_main(argv)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection came
    finally:
        listener.close()
    return int(exited.value.code or 0)


def test_the_cli_does_not_follow_a_planted_profile_to_its_listener(tmp_path, capsys):
    """The whole attack: a profile planted to point at the attacker's listener, remembering
    the operator's credential file. The CLI refuses it; nothing reaches the listener."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    operator_file = tmp_path / "operator.json"
    write_private_file(operator_file, json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s" * 32}))
    shared = directory(tmp_path / "shared", 0o777)
    profile = dict(ATTACKER_PROFILE, identity_endpoint=f"127.0.0.1:{listener.getsockname()[1]}",
                   operator_file=str(operator_file))  # fmt: skip
    (shared / "profile.json").write_text(json.dumps(profile))
    (shared / "profile.json").chmod(0o600)
    assert refused_before_reaching(listener, ["--profile", str(shared / "profile.json"), "tenant", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: FAILED_PRECONDITION FILE_NOT_PRIVATE: others can write")
    assert str(shared) in err and "s" * 32 not in err


@pytest.mark.parametrize("command", [["whoami"], ["tenant", "list"]])
def test_the_cli_names_the_file_and_the_fix(tmp_path, capsys, command):
    """A command that is not async (whoami) and one that is (tenant list) answer alike."""
    path = tmp_path / "profile.json"
    a_profile().save(path)
    path.chmod(0o644)
    with pytest.raises(SystemExit) as exited:
        cmk_main(["--profile", str(path), "--output", "json", *command])
    assert exited.value.code == 1
    printed = capsys.readouterr()
    assert printed.out == ""  # (errors on standard error)
    error = json.loads(printed.err)["error"]
    assert (error["code"], error["reason"], error["metadata"]) == (
        "FAILED_PRECONDITION", "FILE_NOT_PRIVATE", {"path": str(path)},
    )  # fmt: skip
    assert error["message"] == f"{path} is open to group or others (mode 0644); run: chmod 600 {path}"


def test_cmk_login_does_not_follow_a_planted_endpoints_file(tmp_path, capsys, monkeypatch):
    """`cmk login` without endpoints reads where `cmk up` listens from ./.cmk/endpoints.json:
    one another user could write would send the operator's secret to their listener."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    operator_file = tmp_path / "operator.json"
    write_private_file(operator_file, json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s" * 32}))
    shared = directory(tmp_path / "shared", 0o777)
    attacker = f"127.0.0.1:{listener.getsockname()[1]}"
    (shared / "endpoints.json").write_text(json.dumps({"services": dict.fromkeys(("identity", "keyvault", "speech"),
                                                                                  attacker)}))  # fmt: skip
    (shared / "endpoints.json").chmod(0o600)
    monkeypatch.setenv("CMK_DATA_DIR", str(shared))
    for name in ("CMK_IDENTITY_ENDPOINT", "CMK_KEYVAULT_ENDPOINT", "CMK_SPEECH_ENDPOINT", "CMK_TLS_DIR"):
        monkeypatch.delenv(name, raising=False)
    login = ["--profile", str(tmp_path / "mine.json"), "login", "--operator-file", str(operator_file)]
    assert refused_before_reaching(listener, login) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: FAILED_PRECONDITION FILE_NOT_PRIVATE: others can write") and str(shared) in err


@pytest.mark.parametrize(
    "written",
    [{"services": {"identity": 7}},
     {"services": dict.fromkeys(("identity", "keyvault", "speech"), "203.0.113.7:50051")},
     {"services": dict.fromkeys(("identity", "keyvault", "speech"), "127.0.0.1:50051"), "tls_dir": "/etc"}],
)  # fmt: skip
def test_an_endpoints_file_that_is_not_cmk_ups_is_one_line(tmp_path, capsys, monkeypatch, written):
    """Malformed, or of the user's own but naming another machine or another PKI directory
    (`cmk up` writes only loopback and its own): refused before anything is dialled."""
    data_dir = directory(tmp_path / "data", 0o700)
    write_private_file(data_dir / "endpoints.json", json.dumps(written))
    monkeypatch.setenv("CMK_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CMK_IDENTITY_ENDPOINT", raising=False)
    with pytest.raises(SystemExit) as exited:
        cmk_main(["--profile", str(tmp_path / "mine.json"), "login", "--tenant", "t", "--client-id", "c",
                  "--client-secret", "x"])  # fmt: skip
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "is not the endpoints file `cmk up` writes" in err or "which `cmk up` never does" in err


# --- the services' files of secrets ----------------------------------------------------------


@pytest.mark.usefixtures("as_root")
def test_credential_files_of_another_user_or_open_to_others_are_refused(tmp_path):
    path = tmp_path / "keyvault.json"
    write_private_file(path, json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}))
    assert ClientCredentials.from_file(path) == ClientCredentials("t", "c", "s")
    env = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", "CMK_KEYVAULT_CREDENTIALS_FILE": str(path)}
    path.chmod(0o640)
    with pytest.raises(PrivateFileRefused):
        KeyVaultConfig.load(env)
    path.chmod(0o600)
    os.chown(path, OTHER_UID, -1)
    with pytest.raises(PrivateFileRefused):
        ClientCredentials.from_file(path)


@pytest.mark.usefixtures("as_root")
def test_a_master_key_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "identity-master.key"
    key = read_or_create_key(path, create=True, size=32)
    assert mine(path) and read_or_create_key(path, create=False, size=32) == key
    os.chown(path, OTHER_UID, -1)
    with pytest.raises(StartupError) as refused:
        read_or_create_key(path, create=False, size=32)
    assert str(path) in str(refused.value)


def test_a_master_key_is_not_created_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    data = directory(tmp_path / "data", 0o700)
    (data / "identity-master.key").symlink_to(victim)
    with pytest.raises(PrivateFileRefused):
        read_or_create_key(data / "identity-master.key", create=True, size=32)
    assert victim.read_text() == "precious\n"


def test_a_file_of_secrets_is_never_overwritten_and_leaves_no_temporary(tmp_path):
    write_private_file(tmp_path / "operator.json", "first\n")
    with pytest.raises(FileExistsError):
        write_private_file(tmp_path / "operator.json", "second\n")
    assert (tmp_path / "operator.json").read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["operator.json"]


def test_database_passwords_and_tls_keys_go_only_where_no_one_else_writes(tmp_path):
    admin, shared = directory(tmp_path / "admin", 0o700), directory(tmp_path / "shared", 0o777)
    with pytest.raises(PrivateFileRefused):
        make_secrets(admin, {"identity": shared})
    assert list(shared.iterdir()) == []
    pki = ensure_dev_pki(tmp_path / "pki")
    with pytest.raises(PrivateFileRefused):
        issue_copy(pki, "speech", shared)
    assert not (shared / "speech.key").exists()
