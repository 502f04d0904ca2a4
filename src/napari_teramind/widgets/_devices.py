"""The compute-device picker: ``cpu``, each ``cuda:i`` (name, free memory) and ``mps``."""

from __future__ import annotations

from dataclasses import dataclass

from qtpy.QtWidgets import QComboBox, QWidget

from napari_teramind.widgets._settings import get_setting, save_settings


@dataclass(frozen=True)
class DeviceInfo:
    """A compute device: torch name (``cpu``, ``cuda:1``, ``mps``) and a label for users."""

    name: str
    label: str


def available_devices() -> list[DeviceInfo]:
    """``cpu``, each visible CUDA device (name, free/total memory) and ``mps`` when present."""
    out = [DeviceInfo("cpu", "cpu")]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return out
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(i)
            try:
                free, total = torch.cuda.mem_get_info(i)
                memory = f", {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
            except RuntimeError:
                memory = ""
            out.append(DeviceInfo(f"cuda:{i}", f"cuda:{i} ({name}{memory})"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(DeviceInfo("mps", "mps (Apple GPU)"))
    return out


class DevicePicker(QComboBox):
    """Combo box of the compute devices; the default (and the last choice) is a setting."""

    def __init__(self, parent: QWidget | None = None, setting: str = "device"):
        super().__init__(parent)
        self._setting = setting
        self.refresh()
        self.setToolTip(
            "Device the model runs on: cpu, each CUDA GPU (with its free memory) or mps. "
            "The choice is remembered between sessions"
        )
        self.currentIndexChanged.connect(self._remember)

    def refresh(self) -> None:
        """Re-list the devices (free memory changes), keeping the current choice."""
        wanted = self.device() if self.count() else str(get_setting(self._setting))
        self.blockSignals(True)
        self.clear()
        for info in available_devices():
            self.addItem(info.label, info.name)
        index = self.findData(wanted)
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)

    def device(self) -> str:
        """The chosen torch device name."""
        return str(self.currentData() or "cpu")

    def set_device(self, name: str) -> None:
        """Choose device ``name`` (``ValueError`` when it is not available here)."""
        index = self.findData(name)
        if index < 0:
            names = [self.itemData(i) for i in range(self.count())]
            raise ValueError(f"device {name!r} is not available here; choose one of {names}")
        self.setCurrentIndex(index)

    def _remember(self, _index: int) -> None:
        save_settings(**{self._setting: self.device()})
