"""Checkpoints become modules safely: weights_only state_dicts by default, code-running formats only if trusted,
pickled modules never; an import path in a model config only for a module the user allowed."""
import pytest

torch = pytest.importorskip("torch")

from calib.adapters.base import AdapterError  # noqa: E402
from calib.adapters.torch_adapter import autocast_dtype, build_module, read_checkpoint, resolve_device  # noqa: E402
from tiny_adapter_models import TinyAccdoa  # noqa: E402

CONFIG = {"architecture": "tiny_adapter_models:TinyAccdoa", "params": {"frames": 4, "seed": 3}}
ALLOW = ("tiny_adapter_models",)  # what --allow-import tiny_adapter_models passes


@pytest.fixture
def model():
    return TinyAccdoa(frames=4, seed=1).eval()


@pytest.fixture
def x():
    return torch.randn(2, 7, 20, 8, generator=torch.Generator().manual_seed(0))


def same_outputs(a, b, x):
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_state_dicts_load_into_the_configured_architecture(tmp_path, model, x, wrap):
    sd = model.state_dict()
    obj = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3, "cfg": {"lr": [0.1]}}, "model": {"model": sd},
           "module_prefix": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "ckpt.pt")
    built = build_module(tmp_path / "ckpt.pt", CONFIG, trust=False, builtins={}, allow_import=ALLOW)
    assert not built.training and same_outputs(built, model, x)  # seed 3 weights replaced by the file's


def test_builtin_architecture_names(tmp_path, model, x):
    torch.save(model.state_dict(), tmp_path / "c.pt")
    built = build_module(tmp_path / "c.pt", {"architecture": "tiny", "params": {"frames": 4}}, trust=False,
                         builtins={"tiny": TinyAccdoa})
    assert same_outputs(built, model, x)
    with pytest.raises(AdapterError, match=r"unknown architecture 'huge'; built-in: \['tiny'\]"):
        build_module(tmp_path / "c.pt", {"architecture": "huge"}, trust=False, builtins={"tiny": TinyAccdoa})


def test_pickled_modules_are_never_unpickled(tmp_path, model):
    torch.save(model, tmp_path / "whole.pt")
    for trust in (False, True):
        with pytest.raises(AdapterError, match="weights_only=True.*never unpickled.*--trust-checkpoint"):
            read_checkpoint(tmp_path / "whole.pt", trust=trust)
        with pytest.raises(AdapterError, match="never unpickled"):
            build_module(tmp_path / "whole.pt", None, trust=trust, builtins={})


def test_import_path_architectures_need_an_allowed_module(tmp_path, model, x):
    torch.save(model.state_dict(), tmp_path / "c.pt")
    with pytest.raises(AdapterError, match="names the module 'tiny_adapter_models'.*--allow-import tiny_adapter_models"):
        build_module(tmp_path / "c.pt", CONFIG, trust=False, builtins={})
    with pytest.raises(AdapterError, match="--allow-import tiny_adapter_models"):  # a prefix is not a package
        build_module(tmp_path / "c.pt", CONFIG, trust=True, builtins={}, allow_import=("tiny",))
    assert same_outputs(build_module(tmp_path / "c.pt", CONFIG, trust=False, builtins={}, allow_import=ALLOW),
                        TinyAccdoa(frames=4, seed=1).eval(), x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_needs_trust(tmp_path, model, x):
    torch.jit.save(torch.jit.trace(model, x), str(tmp_path / "m.ts"))
    with pytest.raises(AdapterError, match="TorchScript archive can run code.*--trust-checkpoint"):
        build_module(tmp_path / "m.ts", None, trust=False, builtins={})
    assert same_outputs(build_module(tmp_path / "m.ts", None, trust=True, builtins={}), model, x)


def test_bad_checkpoints_and_configs(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "c.pt")
    with pytest.raises(AdapterError, match="--model-config"):
        build_module(tmp_path / "c.pt", None, trust=False, builtins={})
    with pytest.raises(AdapterError, match=r"does not fit.*missing \['conv.weight'"):
        sd = {k: v for k, v in model.state_dict().items() if k != "conv.weight"}
        torch.save(sd, tmp_path / "partial.pt")
        build_module(tmp_path / "partial.pt", CONFIG, trust=False, builtins={}, allow_import=ALLOW)
    with pytest.raises(AdapterError, match="bad params"):
        build_module(tmp_path / "c.pt", {"architecture": CONFIG["architecture"], "params": {"nope": 1}}, trust=False,
                     builtins={}, allow_import=ALLOW)
    with pytest.raises(AdapterError, match="unknown key"):
        build_module(tmp_path / "c.pt", {"architecture": "x", "weights": "y"}, trust=False, builtins={})
    with pytest.raises(AdapterError, match="cannot be imported"):
        build_module(tmp_path / "c.pt", {"architecture": "no_such_mod_q:F"}, trust=False, builtins={},
                     allow_import=("no_such_mod_q",))
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(AdapterError, match=r"junk\.pt: not loadable"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"epoch": 1}, tmp_path / "nosd.pt")
    with pytest.raises(AdapterError, match="holds no state_dict"):
        read_checkpoint(tmp_path / "nosd.pt")
    with pytest.raises(AdapterError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")


def test_devices_and_precision():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(AdapterError, match="no CUDA GPU"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16 and autocast_dtype("fp16", cpu) == torch.float16
    with pytest.raises(AdapterError, match="precision 'fp8'"):
        autocast_dtype("fp8", cpu)


def test_torch_export_programs_need_trust(tmp_path, model, x):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    with pytest.raises(AdapterError, match="torch.export program can run code"):
        build_module(tmp_path / "m.pt2", None, trust=False, builtins={})
    built = build_module(tmp_path / "m.pt2", None, trust=True, builtins={})
    assert same_outputs(built, model, x) and same_outputs(built, model, x[:1])
