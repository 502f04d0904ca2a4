"""The widgets' shared helpers, re-exported from their modules (one concern each).

- :mod:`._settings`: settings that persist between sessions (napari plugin settings or JSON).
- :mod:`._messages`: notifications worded for people.
- :mod:`._devices`: :class:`DevicePicker`; :mod:`._models`: :class:`ModelPicker`, ``load_model``.
- :mod:`._stores`: :class:`StorePicker` and the stores shown in a viewer.
- :mod:`._slices`: the viewer's slice, ``PageDown``/``PageUp`` shortcuts.
- :mod:`._workers`: :class:`TaskPanel`, :class:`OneAtATime`, :class:`Progress`.
- :mod:`._compat`: shims over napari versions (grid, camera, batched updates).
- :mod:`._layout`: layer and layout helpers (scrolling docks, tooltips, layer data).

Import from here or from the modules; both keep working.
"""

from napari_teramind.selection import parse_slices
from napari_teramind.widgets._compat import batched_layer_update, viewer_camera, viewer_grid
from napari_teramind.widgets._devices import DeviceInfo, DevicePicker, available_devices
from napari_teramind.widgets._layout import add_layer_data, scroll_body, set_tooltip
from napari_teramind.widgets._messages import for_people, notify_error, notify_info, notify_warning
from napari_teramind.widgets._models import MODEL_SOURCES, ModelPicker, load_model
from napari_teramind.widgets._settings import (
    DEFAULT_SETTINGS,
    PLUGIN_NAME,
    SETTINGS_ENV,
    SETTINGS_SECTION,
    get_setting,
    load_settings,
    napari_settings,
    save_settings,
    settings_path,
)
from napari_teramind.widgets._slices import (
    NEXT_SLICE_KEY,
    PREVIOUS_SLICE_KEY,
    bind_slice_keys,
    current_slice,
    show_slice,
    single_section_slices,
    slice_origin,
)
from napari_teramind.widgets._stores import StorePicker, stores_in_viewer
from napari_teramind.widgets._workers import (
    OneAtATime,
    Progress,
    TaskCancelled,
    TaskPanel,
    default_progress,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "MODEL_SOURCES",
    "NEXT_SLICE_KEY",
    "PLUGIN_NAME",
    "PREVIOUS_SLICE_KEY",
    "SETTINGS_ENV",
    "SETTINGS_SECTION",
    "DeviceInfo",
    "DevicePicker",
    "ModelPicker",
    "OneAtATime",
    "Progress",
    "StorePicker",
    "TaskCancelled",
    "TaskPanel",
    "add_layer_data",
    "available_devices",
    "batched_layer_update",
    "bind_slice_keys",
    "current_slice",
    "default_progress",
    "for_people",
    "get_setting",
    "load_model",
    "load_settings",
    "napari_settings",
    "notify_error",
    "notify_info",
    "notify_warning",
    "parse_slices",
    "save_settings",
    "scroll_body",
    "set_tooltip",
    "settings_path",
    "show_slice",
    "single_section_slices",
    "slice_origin",
    "stores_in_viewer",
    "viewer_camera",
    "viewer_grid",
]
