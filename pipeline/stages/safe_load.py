"""Loading ``.pt``/``.pth`` checkpoints without running code from them.

A PyTorch checkpoint is a pickle, and unpickling can call any function the file names
(``os.system`` included). layercut therefore never unpickles a checkpoint in full:

- **State dicts** (SAM, MobileSAM): ``load_state_dict`` first lists every global the pickle
  names, statically (``pickle_globals``), and refuses the file unless each one is a tensor-
  rebuilding function, a storage type or ``OrderedDict`` (``STATE_DICT_GLOBALS``); only then
  does it call ``torch.load(weights_only=True)`` on the same open file. The static check matters
  because ``weights_only`` also accepts every class any library registered process-wide with
  ``torch.serialization.add_safe_globals`` (Ultralytics registers its model classes when it
  loads a detector), and constructing such a class can run code (Ultralytics' model builder
  ``eval``\\ s an ``activation`` string from its arguments).
- **Ultralytics checkpoints** (the detector) hold pickled model classes: they are loaded by
  ``pipeline.stages.ultra.load_yolo`` through Ultralytics' own weights-only path.

A refused file raises ``CheckpointRefusedError`` (a ``ValueError``) whose message is one line naming
the file, what it references and how to convert it (``CONVERT_HINT``).
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

# Every global a plain state dict of tensors needs (torch.save of a dict of tensors/Parameters).
STATE_DICT_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
    }
)
_STORAGE = re.compile(r"torch\.[A-Za-z0-9]*Storage")
# Opcodes that import or build objects by a name that is not a plain "module name" argument:
# the name cannot be listed statically, so a file using them is refused.
_DYNAMIC_NAME_OPCODES = frozenset({"STACK_GLOBAL", "OBJ", "EXT1", "EXT2", "EXT4"})

CONVERT_HINT = (
    "convert it in an environment you trust: export the model to ONNX, or re-save its weights "
    "as a plain state dict (torch.save(model.state_dict(), 'weights.pt'))"
)


class CheckpointRefusedError(ValueError):
    """A checkpoint that cannot be loaded without running code from it; ``str()`` is one line."""


def pickle_globals(file: BinaryIO, name: str | Path) -> set[str]:
    """Every global (``"module.name"``) the pickle of a ``torch.save`` zip checkpoint names.

    Read statically with ``pickletools`` (nothing is imported or called). ``file`` is an open
    binary file; its position is left at 0. Raises ``CheckpointRefusedError`` naming ``name`` for a
    file that is not a ``torch.save`` zip archive (the legacy format, TorchScript, a pickle of
    another program), or whose pickle builds objects from names it computes at load time.
    """
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            records = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(records) != 1 or any(n.endswith("/constants.pkl") for n in archive.namelist()):
                raise CheckpointRefusedError(
                    f"{name}: not a torch.save checkpoint (no single data.pkl, or TorchScript); "
                    f"{CONVERT_HINT}"
                )
            data = archive.read(records[0])
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointRefusedError(
            f"{name}: not a torch.save zip checkpoint ({' '.join(str(exc).split())}); "
            f"the legacy format is not read; {CONVERT_HINT}"
        ) from None
    finally:
        file.seek(0)
    names: set[str] = set()
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                names.add(f"{module}.{attr}")
            elif opcode.name in _DYNAMIC_NAME_OPCODES:
                raise CheckpointRefusedError(
                    f"{name}: its pickle builds objects by computed names ({opcode.name}), "
                    f"which a weights-only load does not allow; {CONVERT_HINT}"
                )
    except (ValueError, EOFError) as exc:
        if isinstance(exc, CheckpointRefusedError):
            raise
        raise CheckpointRefusedError(f"{name}: corrupt pickle in the checkpoint ({exc})") from None
    return names


def _state_dict_global(name: str) -> bool:
    return name in STATE_DICT_GLOBALS or bool(_STORAGE.fullmatch(name))


def load_state_dict(path: str | Path, what: str) -> dict:
    """The tensors of a state-dict checkpoint, loaded without running code from the file.

    A plain state dict, or one nested under ``"model"``. ``what`` names the model in messages.
    Raises ``FileNotFoundError`` for a missing file, ``CheckpointRefusedError`` for a file whose
    pickle names anything but tensors (``STATE_DICT_GLOBALS``), and ``ValueError`` naming the
    file when it is unreadable or not a state dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path}")
    with open(path, "rb") as file:  # one open file: the bytes checked are the bytes loaded
        foreign = sorted(n for n in pickle_globals(file, path) if not _state_dict_global(n))
        if foreign:
            shown = ", ".join(foreign[:4]) + (", …" if len(foreign) > 4 else "")
            raise CheckpointRefusedError(
                f"{path}: refused: a {what} state dict holds only tensors, but this file's "
                f"pickle references {shown} (loading it could run code); {CONVERT_HINT}"
            )
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch's own error types; re-raised with the file named
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"cannot load {what} weights {path}: {first}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} is not a {what} state dict")
    return state
