"""``python -m napari_dissipation`` runs the command line (also under ``torchrun``)."""

from .cli import main

raise SystemExit(main())
