"""Build hook: serve the root ``napari.yaml`` to editable installs.

napari finds the plugin through the entry point ``napari_dissipation:napari.yaml``: npe2
looks for ``napari.yaml`` in the package's own folder (the ``submodule_search_locations`` of
``importlib.util.find_spec("napari_dissipation")``).  The manifest lives at the repository
root, so

- a wheel gets it from ``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml
  (``napari_dissipation/napari.yaml`` in the wheel);
- an editable install (``pip install -e .``) imports the package from ``src/`` through a
  ``.pth`` file, so a force-included copy (which hatchling puts in site-packages) is never
  looked at (and hatchling's exact dev mode would make the package a namespace package of
  that one file).  This hook copies the root manifest to ``src/napari_dissipation/napari.yaml``
  (ignored by git) when an editable wheel is built.  After editing ``napari.yaml``, run
  ``pip install -e .`` again; ``tests/test_package.py`` fails while the copy is stale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MANIFEST = "napari.yaml"
PACKAGE = Path("src", "napari_dissipation")


class ManifestForEditableInstalls(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or version != "editable":
            return
        root = Path(self.root)
        target = root / PACKAGE / MANIFEST
        if target.is_symlink():  # a checkout from before the manifest left src/
            target.unlink()
        shutil.copyfile(root / MANIFEST, target)
