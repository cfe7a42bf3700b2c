"""The node's options are defined once (wsk.config.Config); everything else must agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from wsk.config import SERVER_OPTIONS, Config, defaults
from wsk.transport.internals import TESTED

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "socketio"
# options the role writes from variables of their own (addresses, names, URL, the
# installed key file, a list)
WRITTEN_APART = {
    "host",
    "port",
    "node_name",
    "redis_url",
    "cors_origins",
    "auth_jwt_key_file",
    "anonymous_rooms",
}


def role_yaml(path: str) -> dict:
    return yaml.safe_load((ROLE / path).read_text())


def same(role_value, node_value) -> bool:
    if isinstance(node_value, bool) or not isinstance(node_value, int | float):
        return str(role_value) == str(node_value)
    return float(role_value) == float(node_value)


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
            r"^\| `--([a-z-]+)` \| `(WSK_[A-Z_]+)` \| `([^`]*)` \|",
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
