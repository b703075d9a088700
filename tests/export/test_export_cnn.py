"""CNN export round trips: the safetensors weights, the standalone model.py (fed raw images) and ONNX
give what the study's model gives on the task's scaled images."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from archsearch.cli import main
from archsearch.errors import ArchsearchError
from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.export import export_best, export_network, onnx_available
from archsearch.space import CNNArchitecture, CNNSpace
from archsearch.study import Study
from archsearch.tasks import Task, get_task, mnist

#: skips, batch norm, stride 2, max pooling and dropout together; the same without batch norm; a network
#: that shrinks 10x10 images to one pixel (28x28 to two) while reading skip inputs pooled from larger
#: layers; a single 1x1 convolution (ONNX is checked on the study's pick alone: exporting takes seconds)
ARCHITECTURES = (
    "4c3-bn/6c3s2-max-d0.25/5c5-bn+0",
    "4c3/6c3s2-max-d0.25/5c5+0",
    "4c3s2-bn-max/3c3s2-bn-max/4c3-bn+0/5c3-bn-d0.5+0,1",
    "3c1",
)
FILES = ("architecture.json", "model.py", "weights.safetensors")


def load_module(path, name):
    """``model.py`` imported from its export folder, under its own module name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logits(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def digits_study(tmp_path_factory):
    """A tiny CNN search on the 8x8 digits (pixels 0..16), exported; its pick (seed 4) has a skip input that
    is pooled to a smaller size, batch normalization, stride 2, max pooling and dropout."""
    folder = tmp_path_factory.mktemp("digits")
    task = get_task("digits")
    space = CNNSpace(filters=(4,), kernels=(3,), pools=("none", "max"), dropouts=(0.25,), min_layers=3, max_layers=3)
    evaluator = SerialTrainer(task, TrainConfig(max_epochs=1, batch_size=64))
    with Study.create(folder / "d.db", task, steps=1, children_per_step=2, seed=4, space=space,
                      evaluator=evaluator) as study:  # fmt: skip
        study.run(progress=False)
        assert str(study.best().architecture) == "4c3s2-bn-d0.25/4c3-bn-max-d0.25/4c3-bn-d0.25+0"
        yield study, task, export_best(study, folder / "best")


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """An MNIST task read from a tiny ``mnist.npz`` (random uint8 pixels divided by 255), and its raw test images."""
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    x_train, x_test = (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in (40, 12))
    labels = {"y_train": np.arange(40) % 10, "y_test": np.arange(12) % 10}
    np.savez(folder / "mnist.npz", x_train=x_train, x_test=x_test, **labels)
    return mnist(str(folder), val_size=10), x_test


def colour_task():
    """Three-channel 10x10 images standardised per channel after division by 255, and the raw test images."""
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(3, 16, 3, 10, 10), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
    x = (torch.from_numpy(raw).float() / 255 - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    y = torch.arange(16) % 4
    preprocessing = {"input_shape": [3, 10, 10], "pixel_scale": 255.0, "mean": mean, "std": std}
    preprocessing["classes"] = list("abcd")
    return Task("colour", x[0], y, x[1], y, x[2], y, n_classes=4, preprocessing=preprocessing), raw[2]


def random_network(arch, task):
    """``arch`` for ``task`` with drawn weights and batch-norm statistics far from their defaults, in eval mode."""
    generator = torch.Generator().manual_seed(0)
    model = arch.build(task.in_features, task.out_features, generator)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def test_files_and_description(digits_study):
    study, task, paths = digits_study
    expected = {*FILES, "model.onnx"} if onnx_available() else set(FILES)
    assert set(paths) == expected and all(p.stat().st_size > 0 for p in paths.values())
    description = json.loads(paths["architecture.json"].read_text())
    best = study.best()
    assert description["architecture"] == str(best.architecture)
    assert description["input"] == {"shape": [1, 8, 8], "pixel_scale": 16.0, "mean": None, "std": None}
    assert [(layer["in"], layer["stride"], layer["pool"], layer["skips"]) for layer in description["layers"]] == [
        (1, 2, "none", []), (4, 1, "max", []), (8, 1, "none", [0])
    ]  # fmt: skip
    assert all(layer["batch_norm"] and layer["dropout"] == 0.25 for layer in description["layers"])
    assert description["head"] == {"grid": 4, "in": best.architecture.layers[-1].filters * 16, "out": 10}
    assert description["parameters"] == best.params == sum(p.numel() for p in study.best_model().parameters())
    assert description["preprocessing"]["classes"] == list(range(10))
    assert description["source"]["trial"] == best.number and description["source"]["task"] == "digits"
    assert CNNArchitecture.from_dict(description["archsearch_architecture"]) == best.architecture


def test_weights_load_into_the_built_network(digits_study):
    from safetensors.torch import load_file

    study, task, paths = digits_study
    expected = study.best_model()
    network = study.best().architecture.build(1, 10)
    network.load_state_dict(load_file(str(paths["weights.safetensors"])))
    assert torch.equal(logits(network.eval(), task.x_test), logits(expected, task.x_test))


def test_standalone_code_predicts_like_the_study_without_archsearch(digits_study, tmp_path):
    study, task, paths = digits_study
    expected = logits(study.best_model(), task.x_test).argmax(1).tolist()
    assert len(set(expected)) > 1
    raw = (task.x_test[:, 0] * 16).round()  # the pixels 0..16 as load_digits gives them
    np.save(tmp_path / "raw.npy", raw.numpy().astype(np.uint8))
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "sys.modules['archsearch'] = None  # importing archsearch now fails\n"
        "import model\n"
        f"images = np.load({str(tmp_path / 'raw.npy')!r})\n"
        "print(json.dumps([model.predict(images), model.predict(images[:, None].astype(np.float64).tolist())]))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=paths["model.py"].parent, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [expected, expected]


def test_onnx_gives_the_same_logits(digits_study):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the optional extra archsearch[onnx]")
    study, task, paths = digits_study
    session = ort.InferenceSession(str(paths["model.onnx"]))
    assert [i.name for i in session.get_inputs()] == ["images"]
    for split in ("val", "test"):  # two batch sizes: the number of images is free
        x = task.split(split)[0]
        (onnx_logits,) = session.run(None, {"images": x.numpy()})
        expected = logits(study.best_model(), x)
        np.testing.assert_allclose(onnx_logits, expected.numpy(), atol=1e-5)
        assert onnx_logits.argmax(1).tolist() == expected.argmax(1).tolist()


@pytest.mark.parametrize("text", ARCHITECTURES)
@pytest.mark.parametrize("task_name", ["mnist", "colour"])
def test_every_form_of_layer_round_trips(text, task_name, fake_mnist, tmp_path):
    task, raw = fake_mnist if task_name == "mnist" else colour_task()
    arch = CNNArchitecture.parse(text)
    model = random_network(arch, task)
    paths = export_network(model, arch, task, tmp_path, onnx=False)
    module = load_module(paths["model.py"], f"model_{task_name}_{ARCHITECTURES.index(text)}")
    assert torch.equal(module.scaled(raw), task.x_test)  # the scaling is the task's, to the last bit
    exported = module.load_model()
    assert torch.equal(logits(exported, task.x_test), logits(model, task.x_test))
    classes = task.preprocessing["classes"]
    assert module.predict(raw) == [classes[i] for i in logits(model, task.x_test).argmax(1).tolist()]


def test_predict_accepts_one_channel_with_or_without_its_axis_and_refuses_other_shapes(fake_mnist, tmp_path):
    task, raw = fake_mnist
    arch = CNNArchitecture.parse("3c3")
    paths = export_network(random_network(arch, task), arch, task, tmp_path, onnx=False)
    module = load_module(paths["model.py"], "model_shapes")
    model = module.load_model()
    assert module.predict(raw, model) == module.predict(raw[:, None], model) == module.predict(torch.from_numpy(raw))
    for bad in (raw[:, :27], raw[0], np.stack([raw, raw], axis=1)):
        with pytest.raises(ValueError, match=r"images: expected shape \(N, 28, 28\) or \(N, 1, 28, 28\), got"):
            module.predict(bad, model)
    colour, colour_raw = colour_task()
    paths = export_network(random_network(arch, colour), arch, colour, tmp_path / "colour", onnx=False)
    module = load_module(paths["model.py"], "model_colour_shapes")
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, 10, 10\), got \(3, 10, 10\)"):
        module.predict(colour_raw[0])


def test_a_task_whose_mean_does_not_fit_its_channels_is_refused_before_writing(tmp_path):
    task, _ = colour_task()
    broken = dataclasses.replace(task, name="broken", preprocessing={**task.preprocessing, "mean": [0.5]})
    arch = CNNArchitecture.parse("3c3")
    with pytest.raises(ArchsearchError, match="task broken: preprocessing mean has 1 values for 3 image channels"):
        export_network(random_network(arch, task), arch, broken, tmp_path / "out", onnx=False)
    assert not (tmp_path / "out").exists()


def test_the_command_exports_a_cnn_study(digits_study, tmp_path, capsys):
    study, _, _ = digits_study
    assert main(["export", str(study.path), "--out", str(tmp_path / "cli"), "--no-onnx"]) == 0
    assert f"exported {study.best().architecture} (trial {study.best().number})" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == list(FILES)


def test_the_command_refuses_a_study_without_a_network_in_one_line_and_writes_nothing(tmp_path, capsys):
    from archsearch.evaluation import LookupEvaluator, get_benchmark
    from archsearch.strategies import RandomSearch

    bench = get_benchmark("nas-bench-macro")
    with Study.create(tmp_path / "table.db", None, steps=1, children_per_step=2, space=bench.space,
                      strategy=RandomSearch(bench.space), evaluator=LookupEvaluator(bench)) as study:  # fmt: skip
        study.run(progress=False)
    assert main(["export", str(tmp_path / "table.db"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "export builds MLP and CNN networks" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()
