"""napari-teramind: Tera-MIND spatial-mRNA-guided brain generation in napari.

The package is a library first: :mod:`napari_teramind.store`, :mod:`~napari_teramind.phantom`,
:mod:`~napari_teramind.model`, :mod:`~napari_teramind.diffusion`, :mod:`~napari_teramind.train`,
:mod:`~napari_teramind.generate`, :mod:`~napari_teramind.attention`,
:mod:`~napari_teramind.evaluate`, :mod:`~napari_teramind.ingest` and
:mod:`~napari_teramind.export` import neither napari nor Qt (``lint-imports`` checks it), and
``pip install napari-teramind`` installs neither. The ``teramind`` command and the widgets (the
``[napari]`` extra) are thin layers on top.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
