"""Export of component searches: model.py computes the found activation as code and predicts as the
study's network does; an update rule's model.py carries the rule as an optimizer that updates as the
search's did; ONNX gives the same logits."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.export import export_network, onnx_available
from archsearch.space import ActivationArchitecture, UpdateRuleArchitecture
from archsearch.tasks import get_task

#: every operation of the activation grammar at least once, two betas
FORMULAS = (
    "x * sigmoid(beta * x)",
    "exp(-beta1 * (x - tanh(x))^2) + beta2 * sinc(x) + min(x, 0) - asinh(x) / (atan(x)^2 + 1e-07)",
    "max(x, softplus(x)) * erf(x) + sqrt(abs(x)) - log(abs(x) + 1e-07) + cosh(sin(x)) - sinh(cos(x)) + x^3",
    "exp(-x^2) * (beta1 * x + (1 - beta1) * -x) + (x + beta2)",
)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained(arch, task, seed=0):
    """``arch`` trained briefly on ``task``, and its network in eval mode with those weights."""
    result = SerialTrainer(task, TrainConfig(max_epochs=3, batch_size=64)).train(arch, seed)
    assert result.status == "ok", result.error
    model = arch.build(task.in_features, task.out_features)
    model.load_state_dict(result.weights)
    return model.eval()


@pytest.mark.parametrize("index", range(len(FORMULAS)))
def test_model_py_computes_the_activation_as_the_study_did(tmp_path, moons, index):
    arch = ActivationArchitecture.parse(FORMULAS[index], "mlp", (6, 5))
    model = trained(arch, moons)
    paths = export_network(model, arch, moons, tmp_path, onnx=False)
    module = load_module(paths["model.py"], f"activation_model_{index}")
    source = paths["model.py"].read_text()
    assert "class Activation(nn.Module)" in source and str(arch) in source
    assert re.search(r"(?<![.\w])(eval|exec)\(", source) is None
    loaded = module.load_model()
    with torch.no_grad():
        torch.testing.assert_close(loaded(moons.x_test), model(moons.x_test))
    description = json.loads(paths["architecture.json"].read_text())
    assert description["activation"]["formula"] == str(arch)
    assert ActivationArchitecture.from_dict(description["archsearch_architecture"]) == arch


def test_an_image_childs_model_py_predicts_raw_images(tmp_path):
    digits = get_task("digits")
    arch = ActivationArchitecture.parse("x * sigmoid(beta * x)", "cnn", (4, 6))
    model = trained(arch, digits)
    paths = export_network(model, arch, digits, tmp_path, onnx=False)
    module = load_module(paths["model.py"], "activation_cnn_model")
    raw = (digits.x_test[:, 0] * 16).round().numpy()  # the pixels 0..16 as load_digits gives them
    with torch.no_grad():
        expected = model(digits.x_test).argmax(1).tolist()
    assert module.predict(raw) == expected and len(set(expected)) > 1


def test_an_update_rules_model_py_carries_the_rule_as_an_optimizer(tmp_path, moons):
    arch = UpdateRuleArchitecture.parse("(1 + sign(g) * sign(m)) * g - 0.0001 * w", "mlp", (6,))
    model = trained(arch, moons)
    paths = export_network(model, arch, moons, tmp_path, onnx=False)
    module = load_module(paths["model.py"], "rule_model")
    ours, theirs = module.load_model().train(), module.load_model().train()
    optimizers = [module.UpdateRule(ours.parameters(), lr=0.05), arch.optimizer(theirs.parameters(), 0.05, 0.0, 0)]
    for _ in range(3):
        for network, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(moons.x_train), moons.y_train).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)
    assert module.predict(moons.x_test.numpy() * 0) is not None


@pytest.mark.skipif(not onnx_available(), reason="ONNX export needs the optional extra archsearch[onnx]")
def test_onnx_gives_the_same_logits(tmp_path, moons):
    ort = pytest.importorskip("onnxruntime", reason="checking ONNX needs onnxruntime")
    arch = ActivationArchitecture.parse(FORMULAS[1], "mlp", (6, 5))
    model = trained(arch, moons)
    paths = export_network(model, arch, moons, tmp_path, onnx=True)
    session = ort.InferenceSession(str(paths["model.onnx"]))
    (onnx_logits,) = session.run(None, {"features": moons.x_test.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, model(moons.x_test).numpy(), rtol=1e-4, atol=1e-4)
