"""Ctrl-C at a given iteration of a training run, for the tests of what an interrupted run keeps."""

from types import ModuleType
from typing import Any


def ctrl_c_at(monkeypatch: Any, module: ModuleType, name: str, iteration: int) -> None:
    """Patch ``module.name`` (a training function that takes ``callback(it, model, row)``) so that its run
    raises KeyboardInterrupt at ``iteration``, as a user's Ctrl-C would."""
    real = getattr(module, name)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        def press_ctrl_c(it: int, model: Any, row: Any) -> None:
            if it == iteration:
                raise KeyboardInterrupt

        return real(*args, **kwargs, callback=press_ctrl_c)

    monkeypatch.setattr(module, name, interrupted)
