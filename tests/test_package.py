"""The package as a user meets it: install metadata, command line, napari plugin, README."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from napari_dissipation import InputError, __version__
from napari_dissipation.cli import PROG, SUBCOMMANDS, build_parser, demo, main

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-dissipation"
SAMPLES = ("bead_spring_2", "bead_spring_5")


def _run(*args, env=None, timeout=120):
    return subprocess.run(
        [*args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _script() -> str:
    """The installed console script, from the environment that runs the tests."""
    candidate = Path(sys.executable).with_name(PROG)
    return str(candidate) if candidate.exists() else PROG


# ------------------------------------------------------------------ install metadata
def test_version_matches_distribution():
    assert md.version(PLUGIN) == __version__


def test_entry_points_installed():
    manifests = {ep.name: ep.value for ep in md.entry_points(group="napari.manifest")}
    assert manifests.get(PLUGIN) == "napari_dissipation:napari.yaml"
    scripts = {ep.name: ep.value for ep in md.entry_points(group="console_scripts")}
    assert scripts.get(PROG) == "napari_dissipation.cli:main"


def test_packaged_manifest_is_the_root_manifest():
    """The manifest napari reads (beside the package) is the one at the repository root.

    A wheel carries a copy (pyproject.toml's force-include); an editable install gets one
    in src/ from hatch_build.py when ``pip install -e .`` runs, stale after an edit."""
    packaged = resources.files("napari_dissipation").joinpath("napari.yaml")
    assert not Path(str(packaged)).is_symlink()
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text(), (
        "the installed napari.yaml differs from the root one: run `pip install -e .` again")


def test_import_is_light():
    """Importing the package or building the CLI loads neither torch nor napari nor Qt."""
    code = (
        "import sys, napari_dissipation\n"
        "heavy = ('torch', 'napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'vispy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from napari_dissipation.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in heavy[1:] if m in sys.modules))\n"
    )
    out = _run(sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout


# ------------------------------------------------------------------ command line
def test_console_script_help():
    out = _run(_script(), "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: {PROG}")
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_python_m_help():
    out = _run(sys.executable, "-m", "napari_dissipation", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: {PROG}")


def test_version_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"{PROG} {__version__}"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_is_available(name, capsys):
    """Every subcommand of the design is registered and prints its help."""
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert f"usage: {PROG} {name}" in capsys.readouterr().out


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(f"{PROG} ")]


def test_readme_commands_parse():
    """Each ``napari-dissipation ...`` line in the README is a valid command line."""
    commands = _readme_commands()
    assert {shlex.split(c)[1] for c in commands} >= set(SUBCOMMANDS)
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command.split("#")[0])[1:]
        args = parser.parse_args(argv)
        assert callable(args.func), command


def test_readme_states_both_commands():
    text = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0" in text
    assert 'pip install -e ".[all]"' in text and f"{PROG} demo" in text
    assert 'pip install -e ".[testing]" && pytest' in text


# ------------------------------------------------------------------ napari plugin
def test_npe2_validate_with_imports():
    """``npe2 validate`` passes, importing every command the manifest names."""
    out = _run(sys.executable, "-m", "npe2", "validate", PLUGIN, "--imports")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_napari_discovers_the_plugin():
    """napari's plugin manager lists the plugin with its samples (what the menus show)."""
    import npe2
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    pm = npe2.PluginManager.instance()
    manifest = pm.get_manifest(PLUGIN)
    assert manifest.display_name == "Dissipation maps"
    samples = dict(pm.iter_sample_data()).get(PLUGIN, [])
    assert set(SAMPLES) <= {s.key for s in samples}


def test_sample_data_are_plain_layer_tuples():
    """Sample commands return (data, kwargs, "image") tuples without importing napari."""
    code = (
        "import sys\n"
        "from napari_dissipation.gui import sample_data as s\n"
        "layers = s.bead_spring_2()\n"
        "data, kwargs, kind = layers[0]\n"
        "print(kind, data.ndim, 'napari' in sys.modules, 'qtpy' in sys.modules)\n"
    )
    out = _run(sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["image", "3", "False", "False"]


# ------------------------------------------------------------------ demo command
def test_demo_resolves_sample_names():
    assert demo.resolve_sample("bead_spring_2") == "bead_spring_2"
    assert demo.resolve_sample("Bead-Spring-5") == "bead_spring_5"
    with pytest.raises(InputError, match="ambiguous"):
        demo.resolve_sample("bead_spring")
    with pytest.raises(InputError, match="not a sample.*bead_spring_2"):
        demo.resolve_sample("no-such-sample")


def test_demo_bad_sample_is_one_line_exit_2(capsys):
    assert main(["demo", "--sample", "no-such-sample"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sample 'no-such-sample' is not a sample" in err


def test_demo_lists_samples(capsys):
    assert main(["demo", "--sample", "list"]) == 0
    keys = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert set(SAMPLES) <= set(keys)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 notion")
def test_demo_without_display_says_so():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = _run(_script(), "demo", env=env)
    assert out.returncode == 2
    assert "no display" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.gui
def test_demo_opens_sample_and_docks_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    layers, widget = demo.open_demo(viewer, sample="bead_spring_2")
    assert len(layers) >= 1
    movie = layers[0]
    assert movie.data.ndim == 3 and movie.data.shape[0] > 1
    assert viewer.layers.selection.active is movie
    if demo.main_widget_name() is None:
        assert widget is None
    else:
        assert widget is not None
        assert any(w is widget for w in viewer.window.dock_widgets.values())
        assert type(widget).__name__ == demo.MAIN_WIDGET_CLASS
        assert widget.movie_layer is movie
