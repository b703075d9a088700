"""Take the best network away: weights, architecture, standalone code and ONNX.

``export_best`` writes into one folder:

- ``weights.safetensors``: the network's tensors (safetensors: no pickle, so
  loading them can never run code);
- ``architecture.json``: the layers, the input's preprocessing (feature names,
  standardisation, class labels) and where the network came from;
- ``model.py``: plain PyTorch that rebuilds the network, reads the weights file
  itself (needs ``torch`` only, not archsearch and not safetensors) and predicts
  labels (regression: values in the target's units) from raw rows;
- ``model.onnx`` (with the optional extra ``archsearch[onnx]``): the network for
  any ONNX runtime; input ``features`` (already preprocessed rows), output
  ``logits`` (regression: ``outputs``, the standardised prediction).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from archsearch.errors import ArchsearchError
from archsearch.space import MLPArchitecture

_ACTIVATION_CODE = {"relu": "nn.ReLU()", "tanh": "nn.Tanh()"}


#: what :func:`export_best` writes into its folder (the last only with ONNX)
EXPORT_FILES = ("weights.safetensors", "architecture.json", "model.py", "model.onnx")


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_best(study: Any, out: Path, onnx: bool | None = None) -> dict[str, Path]:
    """Write the study's best network to ``out``; ``onnx=None`` writes ONNX when the extra is installed."""
    from safetensors.torch import save_file

    best = study.best()
    if best is None:
        raise ArchsearchError(f"{study.path}: no successful trial to export yet")
    arch = best.architecture
    if not isinstance(arch, MLPArchitecture):
        raise ArchsearchError(f"{study.path}: export builds MLP networks; {arch} is a {arch.kind} architecture")
    if onnx and not onnx_available():
        raise ArchsearchError("--onnx: needs the optional extra; install it with pip install 'archsearch[onnx]'")
    task = study.task
    model = study.best_model()
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in EXPORT_FILES[:3]}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(paths["weights.safetensors"]))
    description = describe(arch, task, study, best)
    paths["architecture.json"].write_text(json.dumps(description, indent=2) + "\n")
    paths["model.py"].write_text(standalone_code(description))
    if onnx or (onnx is None and onnx_available()):
        paths["model.onnx"] = out / "model.onnx"
        export_onnx(model, task.in_features, paths["model.onnx"], "outputs" if task.regression else "logits")
    return paths


def describe(arch: MLPArchitecture, task: Any, study: Any, best: Any) -> dict[str, Any]:
    sizes = [task.in_features, *arch.widths, task.out_features]
    activations = [layer.activation for layer in arch.layers] + [None]
    return {
        "architecture": str(arch),
        "layers": [
            {"in": fan_in, "out": fan_out, "activation": activation}
            for fan_in, fan_out, activation in zip(sizes, sizes[1:], activations)
        ],
        "parameters": best.params,
        "problem": task.problem,
        "preprocessing": task.preprocessing,
        "source": {
            "study": str(study.path) if study.path else None,
            "task": task.name,
            "trial": best.number,
            "metric": study.metric,
            "refit": study.refit_summary(),
            "val_score": best.val_score,
            "test_score": study.test_score(),
        },
        "archsearch_architecture": arch.to_dict(),
    }


def standalone_code(description: dict[str, Any]) -> str:
    """``model.py``: rebuilds the network with plain PyTorch and reads ``weights.safetensors`` itself."""
    modules = []
    for layer in description["layers"]:
        modules.append(f"nn.Linear({layer['in']}, {layer['out']})")
        if layer["activation"]:
            modules.append(_ACTIVATION_CODE[layer["activation"]])
    body = ",\n        ".join(modules)
    pre = description["preprocessing"]
    regression = description.get("problem") == "regression"
    returns = "values in the target's units" if regression else "class labels"
    return f'''"""{description["architecture"]}: a network found by archsearch, as plain PyTorch.

Needs torch only. ``load_model()`` returns the network with its weights;
``predict(rows)`` takes raw input rows (columns: FEATURES), applies the
standardisation the search used, and returns {returns}.
"""

import json
import struct
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
FEATURES = {pre.get("features")!r}
MEAN = {pre.get("mean")!r}
STD = {pre.get("std")!r}
CLASSES = {pre.get("classes")!r}
TARGET_MEAN = {pre.get("target_mean")!r}
TARGET_STD = {pre.get("target_std")!r}
_DTYPES = {{"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}}


def build() -> nn.Sequential:
    """The network, with fresh weights."""
    return nn.Sequential(
        {body},
    )


def load_weights(path: Path = HERE / "weights.safetensors") -> dict:
    """The tensors of a safetensors file: an 8-byte header size, a JSON header, then raw little-endian data."""
    data = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    tensors = {{}}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        raw = bytearray(data[8 + size + start : 8 + size + end])
        tensors[name] = torch.frombuffer(raw, dtype=_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def load_model(path: Path = HERE / "weights.safetensors") -> nn.Sequential:
    model = build()
    model.load_state_dict(load_weights(path))
    return model.eval()


@torch.no_grad()
def predict(rows, model: nn.Sequential | None = None) -> list:
    """The {returns} of raw input rows (a list of lists or an array, one column per feature)."""
    model = model or load_model()
    x = torch.as_tensor(rows, dtype=torch.float32)
    if MEAN is not None:
        x = (x - torch.tensor(MEAN, dtype=torch.float32)) / torch.tensor(STD, dtype=torch.float32)
    outputs = model(x)
    if CLASSES is None:  # regression: the network predicts the standardised target
        return (outputs[:, 0].double() * TARGET_STD + TARGET_MEAN).tolist()
    return [CLASSES[i] for i in outputs.argmax(dim=1).tolist()]
'''


#: the weights inside model.onnx, not in a model.onnx.data beside it (where this PyTorch can choose)
_ONE_FILE = {"external_data": False} if "external_data" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(model: torch.nn.Module, in_features: int, path: Path, output: str = "logits") -> None:
    """ONNX with a variable number of rows; the exporter's own chatter is kept off the terminal."""
    example = torch.zeros(2, in_features)
    rows = torch.export.Dim("rows")
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["features"],
                output_names=[output],
                dynamic_shapes=({0: rows},),
                dynamo=True,
                **_ONE_FILE,
            )
    finally:
        onnx_log.setLevel(level)
