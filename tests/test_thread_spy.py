"""The no-freeze tests' :class:`ThreadSpy` fails when the spied work runs on the calling thread."""

import threading
import types

import pytest

from _widget_helpers import ThreadSpy


def _owner():
    return types.SimpleNamespace(__name__="lib", work=lambda x: x + 1)


def test_spy_passes_work_done_in_another_thread(monkeypatch):
    owner = _owner()
    spy = ThreadSpy(monkeypatch, owner, "work")
    out = []
    worker = threading.Thread(target=lambda: out.append(owner.work(1)))
    worker.start()
    worker.join()
    assert out == [2]  # called through: the real function's result
    spy.assert_off_gui_thread()


def test_spy_fails_work_done_on_the_gui_thread_or_never(monkeypatch):
    owner = _owner()
    spy = ThreadSpy(monkeypatch, owner, "work")
    with pytest.raises(AssertionError, match="never called"):
        spy.assert_off_gui_thread()
    assert owner.work(1) == 2
    with pytest.raises(AssertionError, match="1 of 1 calls on the GUI thread"):
        spy.assert_off_gui_thread()
