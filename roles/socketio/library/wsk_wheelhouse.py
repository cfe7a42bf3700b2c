#!/usr/bin/python
"""Build, on the controller, the wheelhouse that a wsk node installs from."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wsk_wheelhouse
short_description: Build a wheelhouse of a Python project and its dependencies for a target platform
description:
  - Runs on the controller (delegate it to localhost). Builds the project's wheel from I(source)
    reproducibly (fixed SOURCE_DATE_EPOCH, so unchanged code gives a byte-identical wheel), then
    downloads binary wheels of all its dependencies for the target's Python, machine and glibc.
  - pip evaluates environment markers (C(python_full_version < "3.11.3")) against the Python that
    runs it, whatever C(--python-version) says. So pip runs here with its marker environment replaced
    by the target's (I(markers)): the dependencies are those the target itself would choose.
  - The wheelhouse is a directory of I(cache_dir) keyed on the project's name and version, the
    target, and its declared requirements. Dependencies are resolved once per key and pinned in
    C(requirements.txt) inside it; later runs only refresh the project's wheel when its content changed.
  - Nodes then install with C(pip install --no-index --find-links) and need no package index.
options:
  source:
    description: Directory holding the project's pyproject.toml.
    type: path
    required: true
  cache_dir:
    description: Directory that keeps one wheelhouse per key.
    type: path
    required: true
  markers:
    description:
      - The target's environment-marker values (PEP 508), at least C(python_full_version),
        C(python_version) and C(platform_machine); as packaging.markers.default_environment() gives them there.
    type: dict
    required: true
  glibc:
    description: Target glibc version (C(2.36)); wheels for manylinux 2.17 up to it are accepted.
    type: str
    required: true
  pip_python:
    description: Python interpreter whose pip builds and downloads. Default, the one running this module.
    type: path
  pip_extra_args:
    description: More arguments for C(pip download), such as an index URL.
    type: list
    elements: str
    default: []
  constraints:
    description:
      - A pip constraints file (C(name==version) lines) that the dependencies must satisfy, such as the
        project's C(constraints.txt). Its content is part of the wheelhouse's key. Empty for none.
    type: path
"""

RETURN = r"""
directory:
  description: The wheelhouse directory.
  type: str
wheel:
  description: File name of the project's wheel.
  type: str
files:
  description: File names in the wheelhouse.
  type: list
archive:
  description: A tar of the wheelhouse (reproducible), to ship as one file.
  type: str
digest:
  description: SHA-256 over the names and contents of all files; changes when anything to install changes.
  type: str
"""

import email.parser
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile

from ansible.module_utils.basic import AnsibleModule

# Zip timestamps of the built wheel (1980-01-01, the earliest a zip can hold).
SOURCE_DATE_EPOCH = "315532800"
IGNORED = ("build", "dist", "__pycache__", "node_modules")
STAMP = "requirements.txt"
# Runs pip with the marker environment of the target (JSON in WSK_TARGET_MARKERS).
PIP_AS_TARGET = """
import json, os, runpy, sys
from pip._vendor.packaging import markers
target = json.loads(os.environ["WSK_TARGET_MARKERS"])
here = markers.default_environment
def default_environment():
    environment = here()
    environment.update(target)
    return environment
markers.default_environment = default_environment
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


def ignore_when_copying(_directory: str, names: list[str]) -> set[str]:
    """Leave out what a build must not see: VCS data, virtualenvs, caches, old builds."""
    return {
        name
        for name in names
        if name.startswith(".") or name in IGNORED or name.endswith(".egg-info")
    }


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def run(module: AnsibleModule, argv: list[str], env: dict[str, str] | None = None) -> str:
    rc, out, err = module.run_command(argv, environ_update=env or {})
    if rc != 0:
        module.fail_json(msg=f"{' '.join(argv[:4])} ... failed (rc={rc})", stdout=out, stderr=err)
    return out


def wheel_metadata(path: str) -> tuple[str, str, list[str]]:
    """Name, version and requirements (without extras-only ones) of a wheel."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if re.match(r"[^/]+\.dist-info/METADATA$", n))
        meta = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    requires = sorted(r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r)
    return meta["Name"], meta["Version"], requires


def platforms(machine: str, glibc: str) -> list[str]:
    """manylinux tags a target with this glibc can run, newest first."""
    match = re.match(r"2\.(\d+)", glibc)
    if not match:
        raise ValueError(f"not a glibc version: {glibc!r}")
    newest = int(match.group(1))
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def pin(filename: str) -> str:
    """'python_socketio-5.18.1-py3-none-any.whl' -> 'python-socketio==5.18.1'."""
    name, version = filename.split("-")[:2]
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def write_archive(directory: str, files: list[str], archive: str) -> bool:
    """Tar ``files`` of ``directory`` with fixed metadata; True when ``archive`` changed."""
    fresh = archive + ".tmp"
    with tarfile.open(fresh, "w", format=tarfile.PAX_FORMAT) as tar:
        for filename in files:
            info = tar.gettarinfo(os.path.join(directory, filename), arcname=filename)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with open(os.path.join(directory, filename), "rb") as stream:
                tar.addfile(info, stream)
    if os.path.isfile(archive) and sha256(archive) == sha256(fresh):
        os.remove(fresh)
        return False
    os.replace(fresh, archive)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "path", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "markers": {"type": "dict", "required": True},
            "glibc": {"type": "str", "required": True},
            "pip_python": {"type": "path"},
            "pip_extra_args": {"type": "list", "elements": "str", "default": []},
            "constraints": {"type": "path"},
        },
        supports_check_mode=False,
    )
    params = module.params
    python = params["pip_python"] or sys.executable
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    markers = {str(k): str(v) for k, v in params["markers"].items()}
    missing = {"python_full_version", "python_version", "platform_machine"} - set(markers)
    if missing:
        module.fail_json(msg=f"markers lacks {', '.join(sorted(missing))}")
    if not os.path.isfile(os.path.join(params["source"], "pyproject.toml")):
        module.fail_json(msg=f"no pyproject.toml in {params['source']}")
    try:
        tags = platforms(markers["platform_machine"], params["glibc"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    pyver = markers["python_full_version"]
    nodot = markers["python_version"].replace(".", "")
    target = json.dumps(markers, sort_keys=True)
    constraints = params["constraints"]
    if constraints and not os.path.isfile(constraints):
        module.fail_json(msg=f"no constraints file {constraints}")
    pinned = ""
    if constraints:
        with open(constraints, encoding="utf-8") as stream:
            pinned = stream.read()
    changed = False
    os.makedirs(params["cache_dir"], exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="wsk-wheelhouse-") as work:
        # Build from a copy, so that the build leaves nothing in the source tree.
        tree = os.path.join(work, "src")
        shutil.copytree(params["source"], tree, ignore=ignore_when_copying, symlinks=True)
        built_dir = os.path.join(work, "wheel")
        run(
            module,
            [*pip, "wheel", "--no-deps", "--wheel-dir", built_dir, tree],
            env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        wheel = next(n for n in os.listdir(built_dir) if n.endswith(".whl"))
        built = os.path.join(built_dir, wheel)
        name, version, requires = wheel_metadata(built)
        inputs = "\n".join([*requires, target, params["glibc"], pinned])
        inputs_hash = hashlib.sha256(inputs.encode()).hexdigest()[:12]
        key = f"{name}-{version}-py{pyver}-{markers['platform_machine']}-{inputs_hash}"
        path = os.path.join(params["cache_dir"], key)

        if not os.path.isfile(os.path.join(path, STAMP)):
            # Resolve the dependencies once for this key; the pins keep them.
            fresh = tempfile.mkdtemp(prefix=f".{key}-", dir=params["cache_dir"])
            platform_args = [arg for tag in tags for arg in ("--platform", tag)]
            shim = os.path.join(work, "pip_as_target.py")
            with open(shim, "w", encoding="utf-8") as stream:
                stream.write(PIP_AS_TARGET)
            run(
                module,
                [
                    python,
                    shim,
                    "--disable-pip-version-check",
                    "download",
                    "--only-binary=:all:",
                    "--dest",
                    fresh,
                    "--python-version",
                    pyver,
                    "--implementation",
                    "cp",
                    "--abi",
                    f"cp{nodot}",
                    *platform_args,
                    *(["--constraint", constraints] if constraints else []),
                    *params["pip_extra_args"],
                    built,
                ],
                env={"WSK_TARGET_MARKERS": target},
            )
            pins = sorted(pin(n) for n in os.listdir(fresh) if n.endswith(".whl"))
            with open(os.path.join(fresh, STAMP), "w", encoding="utf-8") as stream:
                stream.write("".join(f"{line}\n" for line in pins))
            shutil.rmtree(path, ignore_errors=True)
            os.chmod(fresh, 0o755)  # noqa: S103 - a directory others read the wheels from
            os.replace(fresh, path)
            changed = True

        target = os.path.join(path, wheel)
        if not os.path.isfile(target) or sha256(target) != sha256(built):
            shutil.copyfile(built, target + ".tmp")
            os.replace(target + ".tmp", target)
            changed = True

    files = sorted(n for n in os.listdir(path) if not n.startswith("."))
    digest = hashlib.sha256()
    for filename in files:
        digest.update(f"{filename} {sha256(os.path.join(path, filename))}\n".encode())
    archive = path + ".tar"
    changed = write_archive(path, files, archive) or changed
    module.exit_json(
        changed=changed,
        directory=path,
        key=key,
        wheel=wheel,
        files=files,
        archive=archive,
        requirements=STAMP,
        digest=digest.hexdigest(),
    )


if __name__ == "__main__":
    main()
