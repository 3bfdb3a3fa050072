"""The one place that imports Ultralytics, made side-effect free for layercut users.

Left alone, importing and running Ultralytics:

- pip-installs missing packages at run time (it tried ``onnx`` on this machine);
- probes the network (DNS) at import and downloads any checkpoint name it does not find locally;
- writes ``settings.json`` into ``~/.config/Ultralytics`` and points ``runs_dir``/``weights_dir``
  next to the current git root or working directory;
- sets ``OMP_NUM_THREADS=1`` in the process environment and ``torch.set_num_threads`` to
  ``cpu_count - 1`` (1 on a 2-core machine) whenever a predictor picks its device.

``import_ultralytics()`` sets environment defaults before the first import (a value the user
already set wins), keeps Ultralytics' settings in the layercut cache, and undoes the
``OMP_NUM_THREADS`` change. ``restore_threads(n)`` puts torch back to the configured thread count;
adapters call it after every Ultralytics predict call.

``load_yolo(path)`` loads a ``.pt`` checkpoint with Ultralytics' weights-only unpickling (its
allow-list of model classes, its restricted model builder) whatever ``ULTRALYTICS_SAFE_LOAD``
says and whenever Ultralytics was first imported: Ultralytics reads that switch once, at import,
so an application that imported it first, or ``ULTRALYTICS_SAFE_LOAD=0``, would otherwise get a
full unpickle that runs any code the file names. ``import_ultralytics`` wraps
``ultralytics.nn.tasks.torch_safe_load`` once with a per-thread/per-task switch
(``contextvars``): inside ``load_yolo`` it is called with ``safe_only=True``; everywhere else
(the application's own Ultralytics calls) it behaves exactly as before.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

_LOCK = threading.Lock()
_MODULE: ModuleType | None = None
# Set (to a list collecting the loaded paths) only while ``load_yolo`` runs.
_SAFE_LOADING: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "layercut_safe_loading", default=None
)

# Read by Ultralytics once, at import time (ultralytics/utils/__init__.py in 8.4.x).
_ENV_DEFAULTS = {
    "YOLO_AUTOINSTALL": "false",  # never pip-install at run time
    "YOLO_OFFLINE": "1",  # no DNS probe at import; is_online() is False, so no downloads either
    "YOLO_VERBOSE": "false",  # no per-call console output; layercut reports on its own
}
# ULTRALYTICS_SAFE_LOAD is not set: it is read once at import (an application may have imported
# Ultralytics first) and would change the application's own loads; load_yolo forces weights-only
# loading per call instead.


def layercut_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/layercut``, else ``~/.cache/layercut`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "layercut"


def ultralytics_config_dir() -> Path:
    """Where Ultralytics keeps ``settings.json`` for layercut: ``<cache>/ultralytics``."""
    return layercut_cache_dir() / "ultralytics"


def import_ultralytics() -> ModuleType:
    """Import and return the ``ultralytics`` module once, configured not to touch the user's system.

    Safe to call many times and from several threads; only the first call does work.
    """
    global _MODULE
    with _LOCK:
        if _MODULE is not None:
            return _MODULE
        for name, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        own_settings = "YOLO_CONFIG_DIR" not in os.environ
        if own_settings:
            os.environ["YOLO_CONFIG_DIR"] = str(ultralytics_config_dir())
        omp_before = os.environ.get("OMP_NUM_THREADS")
        already_imported = "ultralytics" in sys.modules

        import ultralytics
        from ultralytics.utils import SETTINGS, checks

        if omp_before is None:
            # Ultralytics sets OMP_NUM_THREADS=1 "for training"; left in the environment it would
            # throttle OpenMP libraries loaded later (numba via pymatting) and child processes.
            os.environ.pop("OMP_NUM_THREADS", None)
        if already_imported and _env_false("YOLO_AUTOINSTALL"):
            # Imported by someone else before our defaults existed: the module constant was read
            # then, so switch run-time pip installs off where the check reads it.
            checks.AUTOINSTALL = False
        if own_settings:
            _keep_settings_in_cache(SETTINGS)
        _restore_pillow_open()
        _gate_torch_safe_load()
        _MODULE = ultralytics
        return ultralytics


def _env_false(name: str) -> bool:
    value = os.environ.get(name, "")
    return value.strip().lower() not in {"1", "true", "yes", "on", "y", "t"}


def _keep_settings_in_cache(settings) -> None:
    """Point Ultralytics' output folders into the layercut cache and switch off telemetry.

    The defaults are ``<git root or cwd>/runs`` etc.; predict never saves (``save=False``) but a
    stray ``save=True`` must not litter the user's project. Written only when a value differs, so
    the settings file is not rewritten on every import.
    """
    root = ultralytics_config_dir()
    wanted = {
        "runs_dir": str(root / "runs"),
        "weights_dir": str(root / "weights"),
        "datasets_dir": str(root / "datasets"),
        "sync": False,
    }
    changed = {key: value for key, value in wanted.items() if settings.get(key) != value}
    if changed:
        settings.update(changed)


def restore_threads(threads: int) -> int:
    """Set torch's CPU thread count to ``threads`` (0 = ``os.cpu_count()``) and return it.

    Ultralytics' predictors call ``torch.set_num_threads(cpu_count - 1)`` when they pick a device,
    which halves SAM and matting speed on a 2-core machine; call this after every predict.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
    import torch

    count = threads or os.cpu_count() or 1
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def resolve_torch_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` pass.

    Anything else raises ``ValueError`` (an unknown string would otherwise reach Ultralytics,
    which reinterprets it, e.g. as a list of GPU indices).
    """
    from pipeline.config import resolve_device

    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return device
    return resolve_device(device)


def _restore_pillow_open() -> None:
    """Undo Ultralytics' process-wide replacement of ``PIL.Image.open``.

    Its wrapper pip-installs ``pi-heif`` the first time Pillow cannot identify a file, so after
    importing ultralytics a text file named ``.jpg`` would trigger an install attempt instead of
    a clean "not an image" error anywhere in the process (CLI, server, evaluation). layercut
    hands Ultralytics arrays, never files, so it does not need the wrapper.
    """
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None:
        Image.open = original


def _gate_torch_safe_load() -> None:
    """Wrap ``ultralytics.nn.tasks.torch_safe_load`` so that ``load_yolo`` forces its
    ``safe_only=True`` (see the module docstring); a no-op when already wrapped or absent."""
    from ultralytics.nn import tasks

    original = getattr(tasks, "torch_safe_load", None)
    if original is None or getattr(original, "_layercut_gate", False):
        return

    @functools.wraps(original)
    def torch_safe_load(weight, safe_only=None):
        loaded = _SAFE_LOADING.get()
        if loaded is None:  # not ours: exactly Ultralytics' behaviour
            return original(weight, safe_only=safe_only)
        loaded.append(str(weight))
        return original(weight, safe_only=True)

    torch_safe_load._layercut_gate = True  # type: ignore[attr-defined]
    tasks.torch_safe_load = torch_safe_load


def _safe_load_unavailable(tasks) -> str | None:
    """Why this torch/Ultralytics pair cannot load a ``.pt`` without full unpickling, or None."""
    import torch

    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        return f"torch {torch.__version__} has no restricted checkpoint loading (needs ≥ 2.6)"
    wrapped = getattr(tasks.torch_safe_load, "__wrapped__", tasks.torch_safe_load)
    safe_load = getattr(tasks, "_SafeLoad", None)
    if (
        not getattr(tasks.torch_safe_load, "_layercut_gate", False)
        or "safe_only" not in inspect.signature(wrapped).parameters
        or "torch_safe_load" not in tasks.load_checkpoint.__code__.co_names
        or (safe_load is not None and not getattr(safe_load, "SUPPORTED", False))
    ):
        return "this Ultralytics version offers no weights-only loading layercut can rely on"
    return None


def load_yolo(path: Path):
    """``ultralytics.YOLO`` for a ``.pt`` checkpoint, unpickled with ``weights_only=True``.

    Raises ``pipeline.stages.safe_load.CheckpointRefusedError`` when this torch/Ultralytics pair
    cannot load it that way; Ultralytics' own errors (a file needing code, a corrupt file)
    propagate for the caller to name the file.
    """
    from pipeline.stages.safe_load import CONVERT_HINT, CheckpointRefusedError

    ultralytics = import_ultralytics()
    from ultralytics.engine import model as engine_model
    from ultralytics.nn import tasks

    reason = _safe_load_unavailable(tasks)
    if reason is None and engine_model.load_checkpoint is not tasks.load_checkpoint:
        reason = "Ultralytics' model loader changed (load_checkpoint is not the checked one)"
    if reason is not None:
        raise CheckpointRefusedError(f"{path}: not loaded: {reason}; {CONVERT_HINT}")
    loaded: list[str] = []
    token = _SAFE_LOADING.set(loaded)
    try:
        model = ultralytics.YOLO(str(path))
    finally:
        _SAFE_LOADING.reset(token)
    if not loaded:  # the loader was bypassed: never hand out a model loaded some other way
        raise CheckpointRefusedError(
            f"{path}: Ultralytics did not load it through its weights-only path"
        )
    return model
