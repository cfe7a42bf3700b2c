"""The node's options are defined once (wsk.config.Config); everything else must agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from wsk import options
from wsk.config import SERVER_OPTIONS, Config, defaults
from wsk.transport.versions import TESTED

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "socketio"
# options the role writes from variables of their own (addresses, names, URL, the
# installed key file, a list), or in each instance's command line (port, name, sid prefix)
WRITTEN_APART = {
    "host",
    "port",
    "node_name",
    "redis_url",
    "cors_origins",
    "auth_jwt_key_file",
    "anonymous_rooms",
    "sid_prefix",
}


def role_yaml(path: str) -> dict:
    return yaml.safe_load((ROLE / path).read_text())


def same(shown, node_value) -> bool:
    """Whether a value written elsewhere (YAML, the README) is the node's default."""
    if isinstance(node_value, bool):
        return options.boolean(str(shown)) == node_value
    if not isinstance(node_value, int | float):
        return str(shown) == str(node_value) or (shown == "none" and node_value == "")
    return float(shown) == float(node_value)


def test_every_option_reaches_the_nodes_through_the_role():
    listed = role_yaml("vars/main.yml")["__socketio_env_options"]
    assert sorted([*listed, *WRITTEN_APART]) == sorted(defaults())


def test_the_role_defaults_are_the_nodes_defaults():
    role = role_yaml("defaults/main.yml")
    for name, default in defaults().items():
        if name in WRITTEN_APART - {"cors_origins"}:
            continue
        assert same(role[f"socketio_{name}"], default), (name, role[f"socketio_{name}"], default)


def test_the_argument_specs_defaults_are_the_role_defaults():
    role = role_yaml("defaults/main.yml")
    specs = role_yaml("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {name for name, spec in specs.items() if spec.get("required")}
    assert set(specs) - required == set(role), set(specs) ^ set(role)
    for name, spec in specs.items():
        if "default" in spec:
            assert spec["default"] == role[name], name


def test_the_readme_lists_every_option_with_its_default():
    rows = {
        match[1]: (match[2], match[3])
        for match in re.finditer(
            r"^\| `--([a-z0-9-]+)` \| `(WSK_[A-Z0-9_]+)` \| `([^`]*)` \|",
            (ROOT / "README.md").read_text(),
            re.M,
        )
    }
    for option in SERVER_OPTIONS:
        flag = option.flag[2:]
        assert flag in rows, f"README has no row for --{flag}"
        env, shown = rows[flag]
        assert env == option.env("WSK_")
        if option.name != "node_name":
            assert same(shown, option.default), (flag, shown, option.default)


def test_the_tested_library_versions_are_the_packages_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        match = re.match(r"([a-z-]+)(?:\[[a-z,]+\])?>=([\d.]+),<([\d.]+)$", requirement)
        if match:
            bounds[match[1]] = (match[2], match[3])
    for name, tested in TESTED.items():
        assert bounds.get(name) == tested, name


def test_a_config_made_in_code_has_the_same_defaults_as_one_from_the_command_line():
    from wsk.config import load_config

    loaded = load_config([], {})
    made = Config(node_name=loaded.node_name)
    assert loaded == made


def test_every_package_of_the_virtualenv_is_pinned_as_installed():
    """constraints.txt (scripts/lock.sh) is what make and the wheelhouse install."""
    from importlib.metadata import distributions

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    installed = {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
        for dist in distributions()
    }
    unpinned = {
        name: version
        for name, version in installed.items()
        if name not in {"pip", "setuptools", "wheel", "wsk"} and pins.get(name) != version
    }
    assert unpinned == {}, "run scripts/lock.sh: these are not pinned as installed"


def test_a_library_outside_the_tested_versions_stops_the_node_with_one_line():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import wsk.transport.versions as versions\n"
        "versions.TESTED['eventlet'] = ('0.1', '0.2')\n"
        "from wsk.cli.server import main\n"
        "sys.exit(main(['--port', '1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("wsk-server: error: eventlet ")
    assert result.stderr.splitlines()[-1].endswith("wsk is tested with eventlet>=0.1,<0.2")
    assert "Traceback" not in result.stderr
