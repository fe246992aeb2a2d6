"""Cut a root file system made by mmdebstrap down to what Countersign needs at run time.

    python tools/image/prune.py ROOTFS

Keeps the Debian packages Python 3.11 needs to run (the dependency closure of ``python3.11-minimal`` and
``libpython3.11-stdlib``), the data of ``ca-certificates``, ``netbase``, ``media-types`` and
``base-files``, and nothing else: no shell, no dpkg or apt, no perl, no coreutils. The files of every other
package (as listed in /var/lib/dpkg/info/PKG.list) are deleted, and so are their entries in
/var/lib/dpkg/status, which then describes exactly the packages left (SBOM scanners read it). Writes the
``name version`` of every package kept to stdout.

Run as root on the host (the root file system's owners are kept). It only deletes inside ROOTFS, and no
path is followed out of it: each listed path's symlinks are resolved as if ROOTFS were / (``/bin`` ->
``usr/bin`` on a merged-/usr system; an absolute link restarts at ROOTFS, ``..`` stops there).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

# Packages whose run-time dependencies are followed.
ROOTS = ("python3.11-minimal", "libpython3.11-stdlib", "libc6")
# Kept for their data only; their dependencies (openssl's command, debconf, perl) are not.
DATA_ONLY = ("ca-certificates", "netbase", "media-types", "base-files", "tzdata")
# Never kept, even when something kept names them: tools for installing and configuring packages, which a
# running image does not need (readline-common names dpkg | install-info for its info-page trigger).
NEVER = frozenset({"dpkg", "install-info", "debconf", "perl-base", "libc-bin", "bash", "dash", "coreutils"})
# Paths of removed packages that Python's ssl module needs: OpenSSL's default CA file and directory
# (/usr/lib/ssl/cert.pem and /usr/lib/ssl/certs, links into /etc/ssl/certs) come with the `openssl` command.
KEEP_PATHS = ("/usr/lib/ssl", "/usr/lib/ssl/cert.pem", "/usr/lib/ssl/certs")
# Programs of kept packages that only maintain them (a shell script that rebuilds the CA bundle).
DROP_PATHS = ("/usr/sbin/update-ca-certificates", "/etc/ca-certificates/update.d")
# Trees no kept package needs at run time (documentation except the licences, manuals, locales, caches).
DROP_TREES = (
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
    "/usr/share/bug",
    "/usr/share/bash-completion",
    "/usr/share/common-licenses",
    "/var/cache",
    "/var/log",
    "/var/lib/apt",
    "/var/lib/systemd",
    "/etc/.pwd.lock",
    "/etc/apt",
    "/etc/dpkg",
    "/etc/cron.daily",
    "/etc/logrotate.d",
    "/etc/update-motd.d",
    "/etc/systemd",
    "/etc/init.d",
    "/etc/rc0.d",
    "/etc/rc1.d",
    "/etc/rc2.d",
    "/etc/rc3.d",
    "/etc/rc4.d",
    "/etc/rc5.d",
    "/etc/rc6.d",
    "/etc/rcS.d",
)
# Usernames and groups of the image (the chart's runAsUser/runAsGroup/fsGroup is 65532).
PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nnonroot:x:65532:\n"
# The root file system's own merged-/usr links.
USR_ALIASES = {"/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib", "/lib64": "/usr/lib64"}


def parse_status(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        fields["_raw"] = block
        stanzas.append(fields)
    return stanzas


def dependency_names(field: str, installed: set[str]) -> set[str]:
    """Installed package names a Depends/Pre-Depends field asks for (of alternatives, the installed one)."""
    names: set[str] = set()
    for clause in filter(None, (c.strip() for c in field.split(","))):
        for alternative in clause.split("|"):
            name = re.split(r"[\s(:]", alternative.strip(), maxsplit=1)[0]
            if name in installed:
                names.add(name)
                break
    return names


def closure(stanzas: dict[str, dict[str, str]]) -> set[str]:
    installed = set(stanzas)
    keep: set[str] = set()
    todo = [p for p in ROOTS if p in installed]
    missing = [p for p in ROOTS if p not in installed]
    if missing:
        raise SystemExit(f"prune: the root file system lacks {', '.join(missing)}")
    while todo:
        name = todo.pop()
        if name in keep or name in NEVER:
            continue
        keep.add(name)
        fields = stanzas[name]
        for field in ("Pre-Depends", "Depends"):
            todo.extend(dependency_names(fields.get(field, ""), installed) - keep)
    keep.update(p for p in DATA_ONLY if p in installed)
    return keep


def canonical(path: str) -> str:
    for alias, target in USR_ALIASES.items():
        if path == alias or path.startswith(alias + "/"):
            return target + path[len(alias) :]
    return path


def inside(root: Path, path: str, *, follow: bool = False, hops: int = 40) -> Path | None:
    """ROOT/path with its symlinks resolved as if ROOT were / (so never outside ROOT).

    The last component is resolved too only with ``follow``; None when the links loop.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        if candidate.is_symlink() and (parts or follow):
            hops -= 1
            if hops < 0:
                return None
            link = os.readlink(candidate)
            if link.startswith("/"):
                current = []
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        current.append(part)
    return root.joinpath(*current)


def exists_in(root: Path, path: Path) -> bool:
    """Whether PATH (a path under ROOT) exists with its symlinks resolved as if ROOT were /."""
    target = inside(root, "/" + str(path.relative_to(root)), follow=True)
    return target is not None and os.path.lexists(target)


def remove(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def prune(root: Path) -> list[tuple[str, str]]:
    root = root.resolve()
    dpkg = root / "var/lib/dpkg"
    stanzas = {s["Package"]: s for s in parse_status((dpkg / "status").read_text())}
    keep = closure(stanzas)

    def listed(pkg: str) -> list[str]:
        lst = dpkg / "info" / f"{pkg}.list"
        if not lst.exists():
            lst = dpkg / "info" / f"{pkg}:{stanzas[pkg].get('Architecture', '')}.list"
        return lst.read_text().splitlines() if lst.exists() else []

    kept_paths = {canonical(p) for pkg in keep for p in listed(pkg)}
    kept_paths.update(KEEP_PATHS)
    dirs: set[str] = set()
    for pkg in sorted(set(stanzas) - keep):
        for path in listed(pkg):
            if canonical(path) in kept_paths or path in ("/.", "/") or path in USR_ALIASES:
                continue
            target = inside(root, path)
            if target is None:
                continue
            if target.is_dir() and not target.is_symlink():
                dirs.add(path)
            else:
                remove(target)
    # Directories of removed packages that are now empty, deepest first.
    for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        target = inside(root, path)
        if target is not None and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
    for tree in DROP_TREES + DROP_PATHS:
        target = inside(root, tree)
        if target is not None:
            remove(target)
    # /usr/share/doc: only the licences.
    doc = root / "usr/share/doc"
    for entry in sorted(doc.rglob("*"), key=lambda p: len(p.parts), reverse=True) if doc.exists() else []:
        if entry.is_symlink() or entry.is_file():
            if entry.name != "copyright":
                entry.unlink()
        elif entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()
    # Links left pointing at removed programs (/etc/alternatives/awk -> /usr/bin/mawk, ...).
    for directory in ("etc/alternatives", "usr/bin", "usr/sbin"):
        for entry in sorted((root / directory).iterdir()) if (root / directory).is_dir() else []:
            if entry.is_symlink() and not exists_in(root, entry):
                entry.unlink()

    # dpkg's database: the kept packages' status entries and file lists only (no maintainer scripts).
    (dpkg / "status").write_text("\n\n".join(stanzas[p]["_raw"] for p in sorted(keep)) + "\n")
    for entry in sorted(dpkg.iterdir()):
        if entry.name in ("status", "info"):
            continue
        remove(entry)
    for entry in sorted((dpkg / "info").iterdir()):
        pkg, _, suffix = entry.name.rpartition(".")
        if pkg.split(":")[0] not in keep or suffix not in ("list", "md5sums"):
            remove(entry)

    # Users: root and 65532 only; no password databases.
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for name in ("shadow", "gshadow", "passwd-", "group-", "shadow-", "gshadow-", "subuid", "subgid"):
        remove(root / "etc" / name)
    home = root / "home/nonroot"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, 65532, 65532)
    home.chmod(0o700)
    return [(p, stanzas[p].get("Version", "")) for p in sorted(keep)]


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for name, version in prune(Path(sys.argv[1])):
        print(name, version)


if __name__ == "__main__":
    main()
