"""Take the best network away: weights, architecture, standalone code and ONNX.

``export_best`` writes a study's model, an MLP or a CNN, into one folder:

- ``weights.safetensors``: the network's tensors (safetensors: no pickle, so
  loading them can never run code);
- ``architecture.json``: the layers, the input's preprocessing (MLP: feature
  names and standardisation; CNN: the image shape and pixel scaling), the class
  labels and where the network came from (``source``);
- ``model.py``: plain PyTorch that rebuilds the network, reads the weights file
  itself (needs ``torch`` only, not archsearch and not safetensors) and predicts
  labels (regression: values in the target's units) from raw rows or raw images;
- ``model.onnx`` (with the optional extra ``archsearch[onnx]``): the network for
  any ONNX runtime, with a variable batch size; input ``features`` (MLP: already
  preprocessed rows) or ``images`` (CNN: already scaled, ``(N, C, H, W)``), output
  ``logits`` (regression: ``outputs``, the standardised prediction).

A study searched with ``--ensemble K`` exports its ensemble instead (:func:`export_ensemble`): each
member as such a folder, ``member-1`` (the best) to ``member-K``, and beside them ``ensemble.json``,
a ``model.py`` that averages the members' predictions with the same ``predict`` and
``load_model()``, and one ``model.onnx`` of the whole ensemble, whose ``logits`` are the log of the
members' mean class probabilities (regression: their mean output).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import warnings
from pathlib import Path
from string import Template
from typing import Any

import torch

from archsearch.errors import ArchsearchError
from archsearch.space import (
    CNNArchitecture,
    ComponentArchitecture,
    MLPArchitecture,
    SettingsArchitecture,
    UpdateRuleArchitecture,
    _formula,
)
from archsearch.space._cnn import HEAD_GRID

_ACTIVATION_CODE = {
    "relu": "nn.ReLU()", "tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()", "elu": "nn.ELU()",
    "leaky_relu": "nn.LeakyReLU()", "selu": "nn.SELU()", "gelu": "nn.GELU()",
}  # fmt: skip
#: rows per forward pass in model.py: bounds its memory on a large batch of images
_CHUNK = 1024


#: what :func:`export_best` writes into its folder (the last only with ONNX)
EXPORT_FILES = ("weights.safetensors", "architecture.json", "model.py", "model.onnx")
#: what a population study's export writes besides: the found schedule of training
SCHEDULE_FILE = "schedule.json"
#: what :func:`export_ensemble` writes beside its members' folders (the last only with ONNX)
ENSEMBLE_FILES = ("ensemble.json", "model.py", "model.onnx")


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_best(study: Any, out: Path, onnx: bool | None = None) -> dict[str, Path]:
    """Write the study's model to ``out`` (its ensemble, where it has one); ``onnx=None`` writes ONNX when
    the extra is installed."""
    members = study.ensemble_members()
    if members is not None:
        return export_ensemble(study, members, out, onnx)
    best = study.best()
    if best is None:
        raise ArchsearchError(f"{study.path}: no successful trial to export yet")
    arch = best.architecture
    _check_exportable(study, arch)
    _check_onnx(onnx)
    origin = source(study, best, study.test_score(), study.refit_summary())
    return _with_schedule(study, best.number, out, export_network(study.best_model(), arch, study.task, out, origin,
                                                                   onnx))  # fmt: skip


def export_trial(study: Any, number: int, out: Path, onnx: bool | None = None) -> dict[str, Path]:
    """Write trial ``number``'s network, with the weights its search kept (see
    :meth:`archsearch.study.Study.trial_model`), to ``out``: any trial of the front, not only the best."""
    _check_onnx(onnx)
    trial, model = study.trial_model(number)
    _check_exportable(study, trial.architecture)
    origin = source(study, trial, study.evaluator.model_test_score(model), None)
    return _with_schedule(study, number, out, export_network(model, trial.architecture, study.task, out, origin, onnx))


def _with_schedule(study: Any, number: int, out: Path, paths: dict[str, Path]) -> dict[str, Path]:
    """``paths``, and for a population study (MIHA, PBT) ``schedule.json``: the pieces of training that made
    trial ``number``'s network, which ``archsearch replay`` trains again from scratch."""
    if not _population(study):
        return paths
    from archsearch.study._population import schedule_of

    path = out / SCHEDULE_FILE
    path.write_text(json.dumps(schedule_of(study, number), indent=1))
    return {**paths, SCHEDULE_FILE: path}


def _population(study: Any) -> bool:
    from archsearch.strategies import STRATEGIES

    name = study.config["strategy"].get("name")
    return name in STRATEGIES and getattr(STRATEGIES.lookup(name), "continues", False)


def _check_exportable(study: Any, arch: Any) -> None:
    if not isinstance(arch, MLPArchitecture | CNNArchitecture | ComponentArchitecture | SettingsArchitecture):
        raise ArchsearchError(
            f"{study.path}: export builds MLP and CNN networks and the fixed networks of formulas; {arch} is a "
            f"{arch.kind} architecture"
        )


def _images(arch: Any) -> bool:
    return isinstance(arch, CNNArchitecture) or (isinstance(arch, ComponentArchitecture) and arch.child == "cnn")


def export_names(study: Any) -> list[str]:
    """What :func:`export_best` may write into its folder for ``study``."""
    members = study.ensemble_members()
    if members is None:
        return [*EXPORT_FILES, SCHEDULE_FILE] if _population(study) else list(EXPORT_FILES)
    folders = [f"member-{position}" for position in range(1, len(members) + 1)]
    return [*ENSEMBLE_FILES, *(f"{folder}/{name}" for folder in folders for name in EXPORT_FILES)]


def export_ensemble(study: Any, members: list[Any], out: Path, onnx: bool | None = None) -> dict[str, Path]:
    """Write the study's ensemble (its ``members``, best first) to ``out``: a folder per member, then
    ``ensemble.json``, ``model.py`` and ``model.onnx`` for the whole."""
    for trial in members:
        _check_exportable(study, trial.architecture)
    _check_onnx(onnx)
    model, task, summary = study.ensemble_model(), study.task, study.ensemble_summary()
    paths: dict[str, Path] = {}
    folders = []
    for position, (trial, network) in enumerate(zip(members, model.members, strict=True), 1):
        folder = f"member-{position}"
        folders.append(folder)
        refit = {"epochs": trial.kept_epoch, "rows": len(task.y_train) + len(task.y_val)} if study.refit_final else None
        origin = source(study, trial, study.evaluator.model_test_score(network), refit)
        written = export_network(network, trial.architecture, task, out / folder, origin, onnx=False)
        paths.update({f"{folder}/{name}": path for name, path in written.items()})
    description = {
        "members": folders,
        "combine": "mean of the outputs" if task.regression else "mean of the class probabilities",
        "problem": task.problem,
        "source": {
            "study": str(study.path) if study.path else None,
            "task": task.name,
            "trials": [trial.number for trial in members],
            "metric": study.metric,
            "refit": bool(study.refit_final),
            "test_score": summary["test_score"] if summary else None,
        },
    }
    paths["ensemble.json"] = out / "ensemble.json"
    paths["ensemble.json"].write_text(json.dumps(description, indent=2) + "\n")
    paths["model.py"] = out / "model.py"
    paths["model.py"].write_text(_ENSEMBLE_MODULE.substitute(count=len(folders), members=repr(folders)))
    if onnx or (onnx is None and onnx_available()):
        paths["model.onnx"] = out / "model.onnx"
        inputs = "images" if _images(members[0].architecture) else "features"
        outputs = "outputs" if task.regression else "logits"
        export_onnx(model, tuple(task.x_train.shape[1:]), paths["model.onnx"], inputs, outputs)
    return paths


def source(study: Any, trial: Any, test_score: float | None, refit: dict[str, int] | None) -> dict[str, Any]:
    """Where the exported network came from: ``architecture.json``'s ``source``: the trial, and the
    network's own test score and refit (``None``: the search's own weights)."""
    return {
        "study": str(study.path) if study.path else None,
        "task": study.task.name,
        "trial": trial.number,
        "phase": trial.phase,
        "kind": trial.kind,
        "metric": study.metric,
        "refit": refit,
        "val_score": trial.val_score,
        "test_score": test_score,
        **({"weight_sharing": study.phases()} if study.shares_weights else {}),
    }


def export_network(
    model: torch.nn.Module,
    arch: MLPArchitecture | CNNArchitecture,
    task: Any,
    out: Path,
    origin: dict[str, Any] | None = None,
    onnx: bool | None = None,
) -> dict[str, Path]:
    """Write ``model`` (``arch`` built for ``task``, in eval mode) to ``out``, with ``origin`` as its source."""
    from safetensors.torch import save_file

    _check_onnx(onnx)
    description = describe(arch, task, origin or {})
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in EXPORT_FILES[:3]}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(paths["weights.safetensors"]))
    paths["architecture.json"].write_text(json.dumps(description, indent=2) + "\n")
    paths["model.py"].write_text(standalone_code(description))
    if onnx or (onnx is None and onnx_available()):
        paths["model.onnx"] = out / "model.onnx"
        inputs = "images" if _images(arch) else "features"
        outputs = "outputs" if task.regression else "logits"
        export_onnx(model, tuple(task.x_train.shape[1:]), paths["model.onnx"], inputs, outputs)
    return paths


def _check_onnx(onnx: bool | None) -> None:
    if onnx and not onnx_available():
        raise ArchsearchError("--onnx: needs the optional extra; install it with pip install 'archsearch[onnx]'")


def describe(arch: Any, task: Any, origin: dict[str, Any]) -> dict[str, Any]:
    """``architecture.json``: what rebuilds the network and what its input and output mean."""
    if isinstance(arch, ComponentArchitecture):
        network = _component_description(arch, task)
    elif isinstance(arch, CNNArchitecture):
        network = _cnn_description(arch, task)
    else:
        mlp = arch.network if isinstance(arch, SettingsArchitecture) else arch
        sizes = [task.in_features, *mlp.widths, task.out_features]
        activations = [layer.activation for layer in mlp.layers] + [None]
        network = {
            "layers": [
                {"in": fan_in, "out": fan_out, "activation": activation}
                for fan_in, fan_out, activation in zip(sizes, sizes[1:], activations)
            ]
        }
        if isinstance(arch, SettingsArchitecture):  # how it was trained: to train it again the same way
            network["training"] = {"optimizer": arch.optimizer_name, "lr": arch.lr, "batch_size": arch.batch}
    return {
        "architecture": str(arch),
        **network,
        "parameters": arch.num_params(task.in_features, task.out_features),
        "problem": task.problem,
        "preprocessing": task.preprocessing,
        "source": origin,
        "archsearch_architecture": arch.to_dict(),
    }


def _component_description(arch: ComponentArchitecture, task: Any) -> dict[str, Any]:
    """A formula's fixed child: its kind and widths, the formula (normal form and as searched), and
    on images the input's shape and scaling."""
    network: dict[str, Any] = {
        "child": arch.child,
        "in_features": task.in_features,
        "widths": list(arch.widths),
        "out_features": task.out_features,
        arch.kind.replace("-", "_"): {"formula": str(arch), "as_searched": _formula.to_text(arch.formula)},
    }
    if arch.child == "cnn":
        network["input"] = _image_input(task)
    return network


def _image_input(task: Any) -> dict[str, Any]:
    """An image task's input: shape and pixel scaling (checked against the channels)."""
    shape = [int(size) for size in task.x_train.shape[1:]]
    pre = task.preprocessing
    for name in ("mean", "std"):
        if pre.get(name) is not None and len(pre[name]) != shape[0]:
            raise ArchsearchError(
                f"task {task.name}: preprocessing {name} has {len(pre[name])} values for {shape[0]} image channels"
            )
    return {"shape": shape, "pixel_scale": pre.get("pixel_scale"), "mean": pre.get("mean"), "std": pre.get("std")}


def _cnn_description(arch: CNNArchitecture, task: Any) -> dict[str, Any]:
    """A CNN's input (shape and pixel scaling), layers and head."""
    given = _image_input(task)
    layers = [
        {
            "in": fan_in,
            "filters": layer.filters,
            "kernel": layer.kernel,
            "stride": layer.stride,
            "padding": layer.kernel // 2,
            "batch_norm": layer.batch_norm,
            "pool": layer.pool,
            "dropout": layer.dropout,
            "skips": list(layer.skips),
        }
        for fan_in, layer in zip(arch._in_channels(given["shape"][0]), arch.layers)
    ]
    return {
        "input": given,
        "layers": layers,
        "head": {"grid": HEAD_GRID, "in": arch.layers[-1].filters * HEAD_GRID**2, "out": task.out_features},
    }


def standalone_code(description: dict[str, Any]) -> str:
    """``model.py``: rebuilds the network with plain PyTorch and reads ``weights.safetensors`` itself."""
    pre = description["preprocessing"]
    regression = description.get("problem") == "regression"
    returns = "values in the target's units" if regression else "class labels"
    kind = description["archsearch_architecture"]["kind"]
    if kind in ("activation", "update-rule"):
        parts = _component_code(description, returns)
    elif kind == CNNArchitecture.kind:
        parts = _cnn_code(description, returns)
    else:
        parts = _mlp_code(description, returns)
    return _MODULE.substitute(
        title=description["architecture"],
        classes=repr(pre.get("classes")),
        target_mean=repr(pre.get("target_mean")),
        target_std=repr(pre.get("target_std")),
        chunk=_CHUNK,
        **parts,
    )


def _mlp_code(description: dict[str, Any], returns: str) -> dict[str, str]:
    modules = []
    for layer in description["layers"]:
        modules.append(f"nn.Linear({layer['in']}, {layer['out']})")
        if layer["activation"]:
            modules.append(_ACTIVATION_CODE[layer["activation"]])
    pre = description["preprocessing"]
    return {
        "usage": f"``predict(rows)`` takes raw input rows (columns: FEATURES), applies the\n"
        f"standardisation the search used, and returns {returns}.",
        "imports": "",
        "constants": f"FEATURES = {pre.get('features')!r}\nMEAN = {pre.get('mean')!r}\nSTD = {pre.get('std')!r}",
        "network": _MLP_NETWORK.substitute(body=",\n        ".join(modules)),
        "predict": _MLP_PREDICT.substitute(returns=returns),
    }


def _component_code(description: dict[str, Any], returns: str) -> dict[str, str]:
    """A formula's fixed child: an ``Activation`` module computing the formula (or ReLU, and an
    ``UpdateRule`` optimizer class, for an update rule), the child network, and the MLP's or the
    CNN's input handling."""
    arch = ComponentArchitecture.from_dict(description["archsearch_architecture"])
    assert isinstance(arch, ComponentArchitecture)
    if arch.child == "cnn":
        parts = _cnn_code({**description, "layers": [], "head": {}}, returns)
        parts["constants"] = _image_constants(description["input"])
        layers = ("nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1) "
                  "for i, (a, b) in enumerate(zip(sizes, sizes[1:]))")  # fmt: skip
        head, pool = "WIDTHS[-1] * HEAD_GRID**2", "\n        x = torch.flatten(F.adaptive_avg_pool2d(x, HEAD_GRID), 1)"
    else:
        parts = _mlp_code({**description, "layers": []}, returns)
        layers, head, pool = "nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])", "WIDTHS[-1]", ""
    parts["imports"] = "import torch.nn.functional as F\n"
    rule = ""
    if isinstance(arch, UpdateRuleArchitecture):
        activation = _RELU_ACTIVATION
        rule = _UPDATE_RULE.substitute(formula=str(arch), code=_formula.to_code(_formula.canonical(arch.formula), {
            name: name for name in arch.variables}))  # fmt: skip
    else:
        count = _formula.betas(arch.formula)
        activation = _ACTIVATION.substitute(
            formula=str(arch),
            beta=f"nn.Parameter(torch.ones({count}))" if count else "None",
            code=_formula.to_code(arch.formula, {"x": "x"}) + ".expand_as(x)",
        )
    parts["constants"] += (f"\nWIDTHS = {list(arch.widths)!r}\nIN_FEATURES = {description['in_features']}\n"
                           f"OUT_FEATURES = {description['out_features']}\nHEAD_GRID = {HEAD_GRID}")  # fmt: skip
    parts["network"] = activation + _COMPONENT_NETWORK.substitute(layers=layers, head=head, pool=pool) + rule
    return parts


def _image_constants(given: dict[str, Any]) -> str:
    """model.py's constants for an image input: its shape and how its pixels are scaled."""
    return (
        f"INPUT_SHAPE = {given['shape']!r}  # channels, height, width\n"
        f"PIXEL_SCALE = {given['pixel_scale']!r}\nMEAN = {given['mean']!r}\nSTD = {given['std']!r}"
    )


def _cnn_code(description: dict[str, Any], returns: str) -> dict[str, str]:
    given = description["input"]
    channels, height, width = given["shape"]
    accepts = f"(N, {channels}, {height}, {width})"
    if channels == 1:
        accepts = f"(N, {height}, {width}) or {accepts}"
    layers = ",\n    ".join(repr(layer) for layer in description["layers"])
    constants = f"{_image_constants(given)}\nLAYERS = [\n    {layers},\n]\nHEAD = {description['head']!r}"
    return {
        "usage": f"``predict(images)`` takes raw images {accepts}, pixel values as the data\n"
        f"files hold them, applies the scaling the search used, and returns {returns}.",
        "imports": "import torch.nn.functional as F\n",
        "constants": constants,
        "network": _CNN_NETWORK,
        "predict": _CNN_PREDICT.substitute(returns=returns, accepts=accepts),
    }


#: model.py; ``$``-placeholders are filled by :func:`standalone_code`
_MODULE = Template('''"""$title: a network found by archsearch, as plain PyTorch.

Needs torch only. ``load_model()`` returns the network with its weights;
$usage
"""

import json
import struct
from pathlib import Path

import torch
${imports}from torch import nn

HERE = Path(__file__).resolve().parent
$constants
CLASSES = $classes
TARGET_MEAN = $target_mean
TARGET_STD = $target_std
CHUNK = $chunk  # rows per forward pass
_DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
}

$network

def load_weights(path: Path = HERE / "weights.safetensors") -> dict:
    """The tensors of a safetensors file: an 8-byte header size, a JSON header, then raw little-endian data."""
    data = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        raw = bytearray(data[8 + size + start : 8 + size + end])
        tensors[name] = torch.frombuffer(raw, dtype=_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def load_model(path: Path = HERE / "weights.safetensors") -> nn.Module:
    model = build()
    model.load_state_dict(load_weights(path))
    return model.eval()

$predict

def _answers(model: nn.Module, x: torch.Tensor) -> list:
    """The network's answers for inputs ``x``: class labels, or values in the target's units."""
    outputs = model(x) if len(x) <= CHUNK else torch.cat([model(part) for part in x.split(CHUNK)])
    if CLASSES is None:  # regression: the network predicts the standardised target
        return (outputs[:, 0].double() * TARGET_STD + TARGET_MEAN).tolist()
    return [CLASSES[i] for i in outputs.argmax(dim=1).tolist()]
''')

_MLP_NETWORK = Template('''
def build() -> nn.Sequential:
    """The network, with fresh weights."""
    return nn.Sequential(
        $body,
    )
''')

_MLP_PREDICT = Template('''
def prepared(rows) -> torch.Tensor:
    """Raw input rows as the network takes them (and as model.onnx takes them): float32, standardised
    by MEAN and STD where set."""
    x = torch.as_tensor(rows, dtype=torch.float32)
    if MEAN is not None:
        x = (x - torch.tensor(MEAN, dtype=torch.float32)) / torch.tensor(STD, dtype=torch.float32)
    return x


@torch.no_grad()
def predict(rows, model: nn.Module | None = None) -> list:
    """The $returns of raw input rows (a list of lists or an array, one column per feature)."""
    return _answers(model or load_model(), prepared(rows))
''')

_CNN_NETWORK = '''
class Network(nn.Module):
    """Each layer reads the previous layer's output (the image for the first) and its skip inputs,
    each average-pooled to that output's height and width, concatenated along channels; then
    conv -> batch normalization (where set) -> ReLU -> 2x2 max pooling (ceil mode, where set) ->
    dropout. The head average-pools the last layer to HEAD["grid"] x HEAD["grid"] and applies one
    linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(layer["in"], layer["filters"], layer["kernel"], stride=layer["stride"],
                      padding=layer["padding"], bias=not layer["batch_norm"])
            for layer in LAYERS
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(layer["filters"]) if layer["batch_norm"] else nn.Identity() for layer in LAYERS
        )
        self.dropouts = nn.ModuleList(nn.Dropout(layer["dropout"]) for layer in LAYERS)
        self.head = nn.Linear(HEAD["in"], HEAD["out"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for layer, conv, norm, dropout in zip(LAYERS, self.convs, self.norms, self.dropouts):
            if layer["skips"]:
                size = x.shape[-2:]
                x = torch.cat([x, *(_resized(outputs[j], size) for j in layer["skips"])], dim=1)
            x = F.relu(norm(conv(x)))
            if layer["pool"] == "max":
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = dropout(x)
            outputs.append(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, HEAD["grid"]), 1))


def _resized(h: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return h if h.shape[-2:] == size else F.adaptive_avg_pool2d(h, size)


def build() -> Network:
    """The network, with fresh weights."""
    return Network()
'''

_ACTIVATION = Template('''
class Activation(nn.Module):
    """The activation function $formula (each layer has its own trainable betas)."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = $beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return $code

''')

_RELU_ACTIVATION = """
Activation = nn.ReLU

"""

_COMPONENT_NETWORK = Template('''
class Network(nn.Module):
    """Hidden layers of WIDTHS, each followed by its own Activation, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        sizes = [IN_FEATURES, *WIDTHS]
        self.layers = nn.ModuleList($layers)
        self.head = nn.Linear($head, OUT_FEATURES)
        self.activations = nn.ModuleList(Activation() for _ in WIDTHS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, activation in zip(self.layers, self.activations):
            x = activation(layer(x))$pool
        return self.head(x)


def build() -> Network:
    """The network, with fresh weights."""
    return Network()
''')

_UPDATE_RULE = Template('''

class UpdateRule(torch.optim.Optimizer):
    """The update rule that trained this network: w <- w - lr * ($formula), over the gradient g,
    Adam's bias-corrected moments m and v (betas 0.9, 0.999), the weight w, noise N(0, 0.01), and
    adam = m / (sqrt(v) + 1e-8), rmsprop = g / (sqrt(v) + 1e-8)."""

    def __init__(self, params, lr: float = 0.01, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad if not group["weight_decay"] else w.grad.add(w, alpha=group["weight_decay"])
                state = self.state[w]
                if not state:
                    state.update(step=0, m=torch.zeros_like(w), v=torch.zeros_like(w))
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(0.9).add_(g, alpha=0.1)
                state["v"].mul_(0.999).addcmul_(g, g, value=0.001)
                m, v = state["m"] / (1 - 0.9**t), state["v"] / (1 - 0.999**t)
                adam, rmsprop = m / (v.sqrt() + 1e-8), g / (v.sqrt() + 1e-8)
                noise = torch.randn_like(w) * 0.1
                w.sub_(($code) * group["lr"])
        return loss
''')

_CNN_PREDICT = Template('''
def scaled(images) -> torch.Tensor:
    """Raw images as the network takes them (and as model.onnx takes them): float32 (N, C, H, W),
    pixels divided by PIXEL_SCALE, then standardised per channel by MEAN and STD where set."""
    x = torch.as_tensor(images).to(torch.float32)
    if x.dim() == 3 and INPUT_SHAPE[0] == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or list(x.shape[1:]) != INPUT_SHAPE:
        raise ValueError(f"images: expected shape $accepts, got {tuple(x.shape)}")
    if PIXEL_SCALE is not None:
        x = x / PIXEL_SCALE
    if MEAN is not None:
        x = (x - torch.tensor(MEAN).view(-1, 1, 1)) / torch.tensor(STD).view(-1, 1, 1)
    return x


@torch.no_grad()
def predict(images, model: nn.Module | None = None) -> list:
    """The $returns of raw images: pixel values as the data files hold them (uint8 0..255, or
    floats), an array, tensor or nested lists of shape $accepts."""
    return _answers(model or load_model(), scaled(images))


prepared = scaled  # the name every model.py gives its inputs' preparation
''')


#: the ensemble's model.py; ``$``-placeholders are filled by :func:`export_ensemble`
_ENSEMBLE_MODULE = Template('''"""An ensemble of $count networks found by archsearch, as plain PyTorch.

Needs torch only. Each member is a folder of its own (``member-1`` is the best network) whose
model.py rebuilds it; ``load_model()`` returns the ensemble with its members' weights, and
``predict(inputs)`` takes what the members' ``predict`` takes and returns their common answer: the
class of the members' mean probability, or (regression) their mean value in the target's units.
"""

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
MEMBERS = $members


def _member(folder: str):
    """A member's model.py as a module (each under its own name: they all define the same names)."""
    spec = importlib.util.spec_from_file_location(f"{__name__}_{folder.replace('-', '_')}", HERE / folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = [_member(folder) for folder in MEMBERS]
FIRST = MODULES[0]  # the members share the input's preprocessing, the classes and the target's scale


class Ensemble(nn.Module):
    """The members predicting together: a classifier's output is the log of their mean class
    probabilities (its argmax is the ensemble's class), a regressor's their mean output."""

    def __init__(self, members: list) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x) for member in self.members])
        if FIRST.CLASSES is None:
            return outputs.mean(dim=0)
        return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - math.log(len(self.members))


def load_model() -> Ensemble:
    return Ensemble([module.load_model() for module in MODULES]).eval()


@torch.no_grad()
def predict(inputs, model: nn.Module | None = None) -> list:
    """The ensemble's answers for raw inputs (rows or images, as each member's ``predict`` takes them)."""
    return FIRST._answers(model or load_model(), FIRST.prepared(inputs))
''')


#: the weights inside model.onnx, not in a model.onnx.data beside it (where this PyTorch can choose)
_ONE_FILE = {"external_data": False} if "external_data" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(
    model: torch.nn.Module, shape: tuple[int, ...], path: Path, input_name: str = "features", output: str = "logits"
) -> None:
    """ONNX for inputs of ``shape`` (one row or image) with a variable number of them; the exporter's
    own chatter is kept off the terminal."""
    example = torch.zeros(2, *shape)
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
                input_names=[input_name],
                output_names=[output],
                dynamic_shapes=({0: rows},),
                dynamo=True,
                **_ONE_FILE,
            )
    finally:
        onnx_log.setLevel(level)
