"""``--screenshot PNG``: a picture of the host window once the study is shown (or
opening failed), then quit — for documentation and smoke tests.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication, QMainWindow

__all__ = ["Screenshot"]


class Screenshot(QObject):
    """Saves a picture of the window once a study is shown (or opening failed), then quits.

    ``ok`` afterwards: the picture was saved, and the study asked for was shown.
    """

    def __init__(self, window: QMainWindow, path: str, *, opened: SignalInstance,
                 failed: SignalInstance) -> None:
        super().__init__(window)
        self.path = path
        self.saved: bool | None = None
        self.failed = False
        opened.connect(self.soon)
        failed.connect(self._on_failed)
        QTimer.singleShot(30_000, self.snap)  # whatever is on screen by then

    @property
    def ok(self) -> bool:
        return bool(self.saved) and not self.failed

    def _on_failed(self, *_: object) -> None:
        self.failed = True
        self.snap()

    def soon(self, *_: object) -> None:
        QTimer.singleShot(300, self.snap)

    def snap(self, *_: object) -> None:
        window = self.parent()
        if self.saved is not None or not isinstance(window, QMainWindow):
            return
        self.saved = window.grab().save(self.path)
        window.close()
        app = QApplication.instance()
        if app is not None:
            app.quit()
