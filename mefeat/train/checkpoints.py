"""Reading and writing model weights without unpickling anything a user hands in.

mefeat's own checkpoints are safetensors files: the tensors of ``model.state_dict()`` plus a
small metadata record (JSON values under string keys). The baselines' official weights are
PyTorch ``.pth`` files (pickles); they are read only with ``torch.load(...,
weights_only=True)``, which restores tensors and plain containers and refuses any other
object, so a crafted pickle cannot run code. A checkpoint saved from ``nn.DataParallel`` has
every key prefixed with ``module.``; the prefix is removed on load.

:func:`load_fold_model` is the one way a fold's network is rebuilt from a checkpoint
(``evaluate``, ``predict``): a checkpoint of another model or label scheme is explained from
its metadata before any state_dict key is compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.files import write_atomic

_DP_PREFIX = "module."
# Keys under which training scripts commonly nest the state dict in a checkpoint dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_SAFETENSORS_SUFFIX = ".safetensors"


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str = _DP_PREFIX) -> dict[str, Tensor]:
    """Remove ``prefix`` (``module.`` from DataParallel) when every key carries it."""
    keys = list(state_dict)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist (or is not a file); check the path")


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state dict "
            "(a mapping of parameter names to tensors); save model.state_dict() instead"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ModelError(
            f"checkpoint {path} is not a plain state dict: entries {bad[:5]} are not tensors"
        )
    return strip_prefix(obj)


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read an official checkpoint (``.pth``/``.pt`` pickle or ``.safetensors``) on the CPU.

    Pickles are read with ``weights_only=True`` only; anything that needs arbitrary code to
    unpickle is refused with a ``ModelError``. A nested ``{"state_dict": ...}`` record is
    unwrapped and a ``module.`` prefix is removed.

    Raises:
        ModelError: the file is missing, of an unknown kind, unreadable, refused as unsafe,
            or does not hold a mapping of names to tensors.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == _SAFETENSORS_SUFFIX:
        return strip_prefix(_read_safetensors(path))
    if suffix not in _PICKLE_SUFFIXES:
        raise ModelError(
            f"checkpoint {path}: unknown file kind {path.suffix!r}; expected one of "
            f"{', '.join((*_PICKLE_SUFFIXES, _SAFETENSORS_SUFFIX))}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure of a user-supplied file is the user's to fix
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"refused to load checkpoint {path}: it cannot be read as plain tensors with "
            f"torch.load(weights_only=True) ({first_line}). mefeat never unpickles arbitrary "
            "objects; re-save it as a state dict of tensors or as .safetensors"
        ) from exc
    return _as_state_dict(obj, path)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as exc:
        raise ModelError(f"cannot read safetensors checkpoint {path}: {exc}") from exc


def save_checkpoint(
    model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model.state_dict()`` and ``metadata`` (JSON-serialisable values) as safetensors.

    Returns the path written. The parent folder is created if needed.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != _SAFETENSORS_SUFFIX:
        raise ModelError(f"checkpoint path {path} must end in {_SAFETENSORS_SUFFIX}")
    tensors: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        # safetensors refuses tensors that share memory (tied weights): give each its own copy.
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ident in seen:
            t = t.clone()
        seen.add(ident)
        tensors[name] = t
    try:
        encoded = {str(k): json.dumps(v) for k, v in (metadata or {}).items()}
    except TypeError as exc:
        raise ModelError(f"checkpoint {path}: metadata is not JSON-serialisable: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata=encoded)
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata record of a safetensors checkpoint (values decoded from JSON)."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:
        raise ModelError(f"cannot read safetensors checkpoint {path}: {exc}") from exc
    return {k: _decode(v) for k, v in raw.items()}


def _decode(value: str) -> Any:
    # Files written by other tools may hold plain strings rather than JSON.
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a safetensors checkpoint into ``model`` (strictly) and return its metadata.

    Raises:
        ModelError: the file is missing or unreadable, or its tensors do not fit ``model``
            (the message lists missing/unexpected keys or the shape mismatch).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() != _SAFETENSORS_SUFFIX:
        raise ModelError(
            f"checkpoint {path} is not a .safetensors file; for official .pth weights use "
            "load_official_state_dict(path) and model.load_state_dict(...)"
        )
    state = strip_prefix(_read_safetensors(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"checkpoint {path} does not fit {type(model).__name__}: {exc}. "
            "Was it saved from another model or with other options/num_classes?"
        ) from exc
    return read_checkpoint_metadata(path)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def save_state(state: Mapping[str, Tensor], path: str | Path,
               metadata: Mapping[str, Any] | None = None, *, dtype: str = "float32") -> int:
    """Write a state dict as safetensors, atomically, its floating tensors stored as
    ``dtype`` (``float32``, ``float16`` or ``bfloat16``; loading casts them back to the
    model's). Returns the bytes written."""
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ModelError(f"checkpoint dtype {dtype!r} is not one of {sorted(DTYPES)}")
    tensors = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in state.items():
        t = tensor.detach().cpu()
        if t.is_floating_point():
            t = t.to(DTYPES[dtype])
        t = t.contiguous()
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ident in seen:  # safetensors refuses tensors that share memory
            t = t.clone()
        seen.add(ident)
        tensors[name] = t
    encoded = {str(k): json.dumps(v) for k, v in (metadata or {}).items()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=encoded))
    return Path(path).stat().st_size


def load_fold_model(path: str | Path, model: str, *, num_classes: int,
                    options: Mapping[str, Any] | None = None, device: str = "cpu",
                    what: str = "the run") -> nn.Module:
    """Model ``model`` (with ``options``, ``num_classes`` outputs) with the weights of
    ``path`` (safetensors or an official ``.pth``), in eval mode on ``device``.

    A mefeat checkpoint names its model and classes in its metadata: one of another model
    or label scheme is refused with those names, before any key is compared (the key diff
    is kept as the exception's cause, shown with ``--debug``).
    """
    from mefeat.models import create_model

    path = Path(path)
    meta = read_checkpoint_metadata(path) if path.suffix.lower() == _SAFETENSORS_SUFFIX else {}
    saved = meta.get("model")
    desc = ", ".join(f"{k} {meta[k]}" for k in ("subject", "epoch", "selection") if k in meta)
    if saved is not None and saved != model:
        raise ModelError(f"{path}: this checkpoint is {saved}'s ({desc}); {what} is "
                         f"{model}'s: give the checkpoints of a {model} run")
    if "num_classes" in meta and int(meta["num_classes"]) != num_classes:
        raise ModelError(f"{path}: this checkpoint has {meta['num_classes']} classes "
                         f"({desc}); {what} has {num_classes}: the two come from runs of "
                         "different label schemes")
    net = create_model(model, num_classes=num_classes, **dict(options or {}))
    state = load_official_state_dict(path)
    own = net.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v
             for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: does not fit model {model!r} with options "
                         f"{dict(options or {})} and {num_classes} classes ({first}); "
                         "--debug shows every key") from exc
    return net.to(device).eval()
