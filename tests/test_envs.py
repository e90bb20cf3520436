"""Conda environments for cluster users pin exactly what pyproject.toml pins."""

import tomllib

import pytest
import yaml

from .conftest import REPO


def pyproject_pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0].lower(): d for d in deps}


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_equal_pyproject(env):
    spec = yaml.safe_load(env.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = pyproject_pins()
    for line in pip:
        name = line.split("==")[0].lower()
        assert name in pins, f"{env.name}: {name} is not a dependency in pyproject.toml"
        assert line == pins[name], f"{env.name}: {line!r} != pyproject's {pins[name]!r}"
    assert {line.split("==")[0].lower() for line in pip} == set(pins), f"{env.name} misses a dependency"


def test_pyproject_pins_are_exact():
    assert all("==" in d for d in pyproject_pins().values())
