"""The Dockerfile, read as Docker reads it (no Docker engine runs here to build it): the image the
chart deploys runs `marconi` as the chart's non-root user, from the project without test tools."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions: comments dropped, `\\` continuations joined."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, args = (pending + line).partition(" ")
        found.append(Instruction(name.upper(), args.strip()))
        pending = ""
    assert not pending, "a continuation runs past the end of the file"
    return found


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in instructions((ROOT / "Dockerfile").read_text()):
        if instruction.name == "FROM":
            found.append([])
        assert found, "the first instruction is FROM"
        found[-1].append(instruction)
    return found


def args_of(stage: list[Instruction], name: str) -> list[str]:
    return [i.args for i in stage if i.name == name]


def test_the_image_is_python_3_11_slim_and_runs_marconi() -> None:
    build, final = stages()
    assert args_of(build, "FROM")[0].split()[0] == "python:3.11-slim"
    assert args_of(final, "FROM") == ["python:3.11-slim"]
    (entrypoint,) = args_of(final, "ENTRYPOINT")
    command = json.loads(entrypoint)  # the exec form: no shell, signals reach marconi
    assert command == ["marconi"]
    assert command[0] in PYPROJECT["project"]["scripts"]


def test_it_runs_as_the_charts_non_root_user() -> None:
    (user,) = args_of(stages()[-1], "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can check it
    values = yaml.safe_load((ROOT / "charts" / "marconi" / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]


def test_it_installs_the_project_without_its_test_extras() -> None:
    build, final = stages()
    installs = [run for run in args_of(build, "RUN") if "pip install" in run]
    assert installs and all("[" not in run for run in installs)  # no `.[test]`
    assert args_of(final, "RUN") and not any("pip install" in r for r in args_of(final, "RUN"))
    # Every package setuptools installs is copied in, and .dockerignore lets it through.
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in found}
    copied = {source for a in args_of(build, "COPY") for source in a.split()[:-1]}
    assert packages | {"pyproject.toml", "README.md"} <= copied
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_it_needs_no_writable_root_and_exposes_the_charts_ports() -> None:
    final = stages()[-1]
    env = " ".join(args_of(final, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # bytecode is compiled at build time instead
    assert any("compileall" in run for run in args_of(stages()[0], "RUN"))
    values = yaml.safe_load((ROOT / "charts" / "marconi" / "values.yaml").read_text())
    exposed = {int(p) for e in args_of(final, "EXPOSE") for p in e.split()}
    assert exposed == {
        values["proxy"]["port"],
        values["node"]["port"],
        values["worker"]["metricsPort"],
    }
