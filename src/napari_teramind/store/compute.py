"""Computing dask arrays of brain stores without dask's global callbacks.

napari registers a global dask cache (a ``dask.callbacks.Callback``) that speeds up browsing.
dask's global callbacks are not thread-safe: every computation that uses them swaps
``Callback.active`` for the time it runs, so two threads computing at once can leave the cache
unregistered, or share its timing table so that one of them fails with a ``KeyError`` in
``Cache._posttask`` (seen when a worker read a gene's contrast limits while napari sliced another
gene of the same store). The library computes in worker threads while napari slices layers of
the same stores on the GUI thread; :func:`compute` runs with no callbacks at all and leaves the
global ones to napari.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compute(array: Any, **kwargs: Any) -> np.ndarray:
    """``array.compute(**kwargs)`` as a numpy array, without dask's global callbacks.

    Parameters
    ----------
    array
        A dask array (anything with ``compute``); numpy arrays pass through.
    **kwargs
        Passed to ``compute`` (e.g. ``scheduler="synchronous"``).
    """
    if not hasattr(array, "compute"):
        return np.asarray(array)
    return np.asarray(array.compute(callbacks=(), **kwargs))
