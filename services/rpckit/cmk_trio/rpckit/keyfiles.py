"""Files that hold secrets, read and written in one place and in one way: master keys and
speech's key ring, the operator's credential, platform credentials, database passwords,
development TLS private keys, and the CLI's profiles (tokens, and where to send a secret).

They are treated as ssh treats its own (StrictModes). A file of secrets is read only when

- it is a regular file owned by this user (the effective uid) or by root, and no one else may
  read or write it (no group or other bits: 0600 or 0400);
- every directory above it, along the path as given and along the path its symbolic links
  lead to, belongs to this user or to root and no one else may write to it, unless it is
  sticky: in a sticky directory (/tmp) only a file's owner may rename or remove it, so a
  name of ours there cannot be swapped. A directory that others may write and that is not
  sticky is where a profile could be planted (issue 22, item 8): refused. Group write is
  allowed where the group is the user's private one (named as the user, no other members).

and it is written only into such a directory: under a random temporary name in the same
directory, created exclusively without following a link (O_CREAT|O_EXCL|O_NOFOLLOW, mode
0600), synced, then linked or renamed into place, never through a symbolic link at the final
name and never over another user's file. A new file is linked in, so a file that appeared
meanwhile is never overwritten; a replaced file (a profile, a key ring) is renamed over,
whole or not at all.

Each refusal is a PrivateFileRefused (a StartupError, so the services print it as their one
line and exit 3) whose message names the path and what to do; the CLI shows it with the
reason FILE_NOT_PRIVATE."""

from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from cmk_trio.rpckit.datadir import StartupError, make_private_dir

MAX_BYTES = 1 << 20
"""A file of secrets larger than this is not one of ours (and is not read into memory)."""

# Errors of os.link on filesystems without hard links: the new file is renamed in instead.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


class PrivateFileRefused(StartupError):
    """A file of secrets, or a directory it is in, that this process will not trust: another
    user's, open to others, a symbolic link where a file is written, or not a regular file.
    The message is one line naming `path` and what to do."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _others_may_write(st: os.stat_result) -> bool:
    """Whether someone but the owner may add, rename or remove entries of a directory. The
    group's write bit is not someone else where the group is the user's private group (named
    as the user, no other members; the default of Debian and Fedora, whose users' umask is
    002), as Debian's ssh allows; a sticky directory (/tmp) lets only a file's owner rename
    or remove it, so a name of ours there cannot be swapped."""
    if st.st_mode & stat.S_ISVTX or not st.st_mode & 0o022:
        return False
    if st.st_mode & 0o002:
        return True
    try:
        me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(st.st_gid)
    except KeyError:
        return True
    return group.gr_name != me or any(member != me for member in group.gr_mem)


def require_private_dir(directory: Path) -> None:
    """Refuse `directory` as a place of files of secrets unless it and every directory above
    it (as given, and as its links resolve) are this user's or root's and not writable by
    others (sticky directories excepted). The directory must exist."""
    lexical = Path(os.path.abspath(directory))
    seen: set[Path] = set()
    for start in (lexical, lexical.resolve()):
        for place in (start, *start.parents):
            if place in seen:
                continue
            seen.add(place)
            st = os.stat(place)  # follows a link: the directory its entries are in
            real = place.resolve()
            named = place if real == place else f"{place} (a link to {real})"
            if not stat.S_ISDIR(st.st_mode):
                raise PrivateFileRefused(directory, f"{named} is not a directory")
            if not _trusted_owner(st.st_uid):
                raise PrivateFileRefused(
                    directory,
                    f"the directory {named} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}) or "
                    "root, who could plant or swap files of secrets there; use a directory of your own",
                )
            if _others_may_write(st):
                raise PrivateFileRefused(
                    directory,
                    f"others can write to the directory {named} (mode {stat.S_IMODE(st.st_mode):04o}) and could "
                    f"plant or swap files of secrets there; run: chmod go-w {place} (or use a directory of your own)",
                )


def _require_private_stat(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise PrivateFileRefused(path, f"{path} is not a regular file; a file of secrets is one")
    if not _trusted_owner(st.st_uid):
        raise PrivateFileRefused(
            path,
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); a file of secrets must be "
            "your own: remove it (or, if you made it, chown it to yourself)",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise PrivateFileRefused(path, f"{path} is open to group or others (mode {mode:04o}); run: chmod 600 {path}")
    if not mode & 0o400:  # (root could read it anyway: refused all the same, as anyone else would be)
        raise PrivateFileRefused(path, f"{path} is not readable by its owner (mode {mode:04o}); run: chmod 600 {path}")


def read_private_file(path: Path) -> bytes:
    """The bytes of the file of secrets `path`, after the checks above (FileNotFoundError if
    there is none). An unreadable file is a StartupError saying so, not a traceback."""
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang the open (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise  # the callers' own case: a file not made yet, or a profile not signed in
    except PermissionError as exc:
        raise StartupError(
            f"cannot read {path} ({exc.strerror}); make it readable by this user (uid {os.geteuid()}): "
            f"chown it to this user and run: chmod 600 {path}"
        ) from None
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        # Of the file opened, not of a name that may change since; before fdopen, which
        # refuses a directory with a traceback of its own.
        _require_private_stat(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        require_private_dir(path.parent)
        if st.st_size > MAX_BYTES:
            raise PrivateFileRefused(path, f"{path} is {st.st_size} bytes, too large for a file of secrets")
        return f.read(MAX_BYTES + 1)


def read_private_text(path: Path) -> str:
    """`read_private_file` as UTF-8 text."""
    return read_private_file(path).decode()


def write_private_file(path: Path, text: str | bytes, *, replace: bool = False) -> None:
    """Write the file of secrets `path` (mode 0600) whole or not at all: its directory made
    (0700) if missing and checked, the content in a new file of a random name beside it
    (O_CREAT|O_EXCL|O_NOFOLLOW), synced, then put in place.

    Without `replace`, a file that exists is never overwritten (FileExistsError): a secret
    another process may already rely on stays. With `replace`, an existing file is replaced
    only if it is this user's regular file. Either way a symbolic link at `path` is refused."""
    make_private_dir(path.parent)
    require_private_dir(path.parent)
    _require_writable_name(path, replace)
    data = text.encode() if isinstance(text, str) else text
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask took away or left
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, path)  # a rename replaces a link itself, never its target
        else:
            _link_new(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    _sync_directory(path.parent)


def _require_writable_name(path: Path, replace: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise PrivateFileRefused(
            path, f"{path} is a symbolic link; a file of secrets is never written through one: remove it"
        )
    if not replace:
        raise FileExistsError(errno.EEXIST, "a file of secrets is never overwritten", str(path))
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        raise PrivateFileRefused(
            path, f"{path} is not a file of this user's (uid {st.st_uid}) to replace; remove it, or choose another path"
        )


def _link_new(temporary: Path, path: Path) -> None:
    """Put `temporary` at `path` only if nothing is there (a hard link fails if the name exists)."""
    try:
        os.link(temporary, path, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "a file of secrets is never overwritten", str(path)) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # A filesystem without hard links: rename, having looked (the directory is only ours).
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "a file of secrets is never overwritten", str(path)) from None
        os.rename(temporary, path)


def _sync_directory(directory: Path) -> None:
    """The new name itself on disk, not only the file's content (best effort: not every
    filesystem lets a directory be opened and synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_or_create_key(path: Path, *, create: bool, size: int, random: Callable[[int], bytes] = os.urandom) -> bytes:
    """The key in a file of base64 text, or a new random one written there if `create`.

    Without `create`, a missing file is an error: data sealed with the lost key exists, and
    a new key could not open it.
    """
    try:
        held = read_private_file(path)
    except FileNotFoundError:
        held = None
    if held is not None:
        try:
            key = base64.b64decode(held.strip(), validate=True)
        except ValueError:
            raise StartupError(f"{path} does not hold a base64 key; restore the key file") from None
        if len(key) != size:
            raise StartupError(f"{path} holds a {len(key)}-byte key; {size} bytes are needed; restore the key file")
        return key
    if not create:
        raise StartupError(
            f"the master key file {path} is missing, but the database holds data sealed with it; "
            "restore the file (a new key could not open that data)"
        )
    key = random(size)
    write_private_file(path, base64.b64encode(key).decode() + "\n")
    return key
