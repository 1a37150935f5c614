"""The one trainer: resume equals an uninterrupted run, NaN stops, schedules, best epoch."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from katbench.tasks import TaskSpec
from katbench.train import NonFiniteLossError, TrainerSettings, fit, seed_everything


def _mse(model, loader):
    return sum(float(F.mse_loss(model(x), y)) for x, y in loader)


def _spec(loss=None) -> TaskSpec:
    seed_everything(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    return TaskSpec(model=nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)),
                    train=batches, val=batches[:1], test=batches[1:2],
                    loss=loss or (lambda m, b: F.mse_loss(m(b[0]), b[1])), evaluate=_mse,
                    metric="mse", higher_is_better=False)


def _settings(**kw) -> TrainerSettings:
    base = {"epochs": 6, "lr": 5e-2, "progress": "none", "schedule": "cosine",
            "warmup_epochs": 1, "clip_grad_norm": 1.0}
    return TrainerSettings.from_config({**base, **kw})


def test_fit_learns_and_tracks_the_best_validation_epoch(tmp_path):
    logged = []
    result = fit(_spec(), _settings(warmup_epochs=2), tmp_path / "c.pt",
                 log=lambda e, m: logged.append(m))
    history = [m["val_mse"] for m in logged]
    assert history[-1] < history[0] / 2
    assert result["best"]["val_mse"] == min(history)
    assert result["best"]["epoch"] == 1 + history.index(min(history))
    assert logged[-1]["lr"] == pytest.approx(0.0, abs=1e-12)   # cosine ends at min_lr
    assert logged[0]["lr"] == pytest.approx(5e-2 * 5 / 8)        # warmup: step 4 of 8
    assert (tmp_path / "c.pt").exists()


def test_resume_continues_to_the_same_final_metrics(tmp_path):
    full = fit(_spec(), _settings(), tmp_path / "full.pt")

    def interrupt_at_epoch_3(epoch, metrics):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_spec(), _settings(checkpoint_every_s=0), tmp_path / "cut.pt",
            log=interrupt_at_epoch_3)
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["state"]["epoch"] == 2
    resumed = fit(_spec(), _settings(), tmp_path / "cut.pt", resume=True)
    assert resumed["epochs_done"] == 6
    assert resumed["final"]["test_mse"] == full["final"]["test_mse"]
    assert resumed["best"] == full["best"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = []

    def loss(model, batch):
        calls.append(1)
        value = F.mse_loss(model(batch[0]), batch[1])
        return value * math.nan if len(calls) == 6 else value   # epoch 2, second batch

    with pytest.raises(NonFiniteLossError, match=r"toy: training loss became nan at epoch 2, "
                                                 r"step 1; the last good checkpoint is kept"):
        fit(_spec(loss), _settings(checkpoint_every_s=0), tmp_path / "c.pt", desc="toy")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["state"]["epoch"] == 1


@pytest.mark.parametrize(("key", "value", "message"), [
    ("optimizer", "sgd", "trainer.optimizer='sgd' is invalid; set it to one of"),
    ("epochs", 0, "trainer.epochs=0 is invalid"),
    ("warmup_epochs", 100, "trainer.warmup_epochs=100 is invalid; set it to in [0, epochs)"),
    ("lrr", 1.0, "unknown trainer key(s) ['lrr']"),
    ("log_every", 0, "trainer.log_every=0 is invalid; set it to null or an integer >= 1"),
    ("matmul_precision", "tf32", "trainer.matmul_precision='tf32' is invalid; set it to one of "
                                 "('highest', 'high', 'medium')"),
])
def test_settings_reject_bad_values(key, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        TrainerSettings.from_config({key: value})


def test_matmul_precision_is_applied_for_the_run(tmp_path):
    try:
        fit(_spec(), _settings(epochs=2, matmul_precision="high"), tmp_path / "c.pt")
        assert torch.get_float32_matmul_precision() == "high"
        fit(_spec(), _settings(epochs=2), tmp_path / "d.pt")   # the default: full float32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_plateau_schedule_lowers_the_rate(tmp_path):
    logged = []
    fit(_spec(lambda m, b: 0 * m(b[0]).sum() + 1.0),  # no gradient: validation stalls
        _settings(schedule="plateau", warmup_epochs=0, plateau_patience=0, epochs=3),
        tmp_path / "c.pt", log=lambda e, m: logged.append(m["lr"]))
    assert logged[-1] < logged[0]


def test_plateau_on_loss_watches_the_validation_loss(tmp_path):
    logged = []
    spec = _spec()
    fit(spec, _settings(schedule="plateau", warmup_epochs=0, plateau_on="loss", epochs=2),
        tmp_path / "c.pt", log=lambda e, m: logged.append(m))
    mse = _mse(spec.model, spec.val)   # _spec's loss is the MSE, one batch per split
    assert logged[-1]["val_loss"] == pytest.approx(mse, rel=1e-5)
    with pytest.raises(ValueError, match="plateau_on=loss watches the validation loss, but "
                                         "this task has no validation split"):
        fit(dataclasses.replace(spec, val=None),
            _settings(schedule="plateau", plateau_on="loss"), tmp_path / "d.pt")
    with pytest.raises(ValueError, match="trainer.plateau_on"):
        TrainerSettings.from_config({"plateau_on": "val"})


def test_plateau_on_loss_reuses_the_metrics_forward_pass(tmp_path):
    spec = _spec()
    spec = dataclasses.replace(spec, val=spec.train[:2])   # two validation batches
    modes = []
    spec.model.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    logged = []
    fit(spec, _settings(schedule="plateau", warmup_epochs=0, plateau_on="loss", epochs=1),
        tmp_path / "c.pt", log=lambda e, m: logged.append(m))
    assert modes.count(False) == 2 + 1   # each val batch once (metric and loss), one test batch
    assert logged[-1]["val_loss"] == pytest.approx(_mse(spec.model, spec.val) / 2, rel=1e-5)
    assert logged[-1]["val_mse"] == pytest.approx(_mse(spec.model, spec.val), rel=1e-5)


def test_plateau_on_loss_names_a_loss_that_cannot_reuse_the_forward_pass(tmp_path):
    spec = _spec(lambda m, b: F.mse_loss(m(2 * b[0]), b[1]))   # not the metric's input
    with pytest.raises(RuntimeError, match="use trainer.plateau_on=metric"):
        fit(spec, _settings(schedule="plateau", warmup_epochs=0, plateau_on="loss", epochs=1),
            tmp_path / "c.pt")


def test_weight_decay_spares_biases_norms_embeddings_and_rational_coefficients():
    from katbench.layers.group_rational import GroupRational
    from katbench.train import param_groups

    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), GroupRational(num_groups=2))
    model.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
    decay, exempt = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and exempt["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert {id(p) for p in exempt["params"]} == {
        id(p) for n, p in model.named_parameters() if n != "0.weight"}


def test_ema_weights_are_evaluated_and_exported(tmp_path):
    spec = _spec()
    logged = []
    fit(spec, _settings(ema_decay=0.5, epochs=3), tmp_path / "c.pt",
        log=lambda e, m: logged.append(m))
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    assert not torch.equal(ema["0.weight"], ckpt["model"]["0.weight"])
    assert torch.equal(spec.model.state_dict()["0.weight"], ema["0.weight"])  # exported = EMA
    with torch.no_grad():
        assert logged[-1]["test_mse"] == pytest.approx(_mse(spec.model, spec.test))


def test_plateau_stops_at_min_lr(tmp_path):
    logged = []
    result = fit(_spec(lambda m, b: 0 * m(b[0]).sum() + 1.0),
                 _settings(schedule="plateau", warmup_epochs=0, plateau_patience=0, epochs=20,
                           min_lr=5e-2 / 8, stop_at_min_lr=True),
                 tmp_path / "c.pt", log=lambda e, m: logged.append(m["lr"]))
    assert result["stopped_early"] == "min_lr" and result["epochs_done"] == 4
    assert logged == pytest.approx([5e-2, 5e-2, 5e-2 / 2, 5e-2 / 4])   # lr used per epoch


def test_log_lines_come_every_log_every_epochs(tmp_path, capsys):
    fit(_spec(), _settings(progress="log", log_every=2), tmp_path / "c.pt")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if " epoch " in ln]
    assert [ln.split(" epoch ")[1].split()[0] for ln in lines] == ["2/6", "4/6", "6/6"]
    assert "val_mse=" in lines[0] and "test_mse=" in lines[0]


def _shuffled_spec(loss=None) -> TaskSpec:
    """``_spec`` with a loader that reshuffles every pass from its own generator."""
    from katbench.data.tabular import TensorBatches

    spec = _spec()
    x, y = torch.cat([b[0] for b in spec.train]), torch.cat([b[1] for b in spec.train])
    return TaskSpec(model=spec.model, train=TensorBatches({"x": x, "y": y}, 64, True, seed=3),
                    val=spec.val, test=spec.test, evaluate=_mse, metric="mse",
                    loss=loss or (lambda m, b: F.mse_loss(m(b["x"]), b["y"])),
                    higher_is_better=False)


def _interrupted_at(step: int):
    """A ``_shuffled_spec`` loss that stops the run (KeyboardInterrupt) at training step
    ``step``, counted from 1."""
    steps = []

    def loss(model, batch):
        steps.append(1)
        if len(steps) == step:
            raise KeyboardInterrupt
        return F.mse_loss(model(batch["x"]), batch["y"])

    return loss


def test_resume_from_an_epoch_boundary_keeps_the_shuffle_order(tmp_path):
    # Stopped in epoch 4's first step, the run keeps the checkpoint written at the end of epoch
    # 3 (step 0 of epoch 4): the loader's generator must come back as it was then, not as a
    # fresh loader seeds it.
    full = fit(_shuffled_spec(), _settings(), tmp_path / "full.pt")
    with pytest.raises(KeyboardInterrupt):
        fit(_shuffled_spec(_interrupted_at(13)), _settings(checkpoint_every_s=0),
            tmp_path / "cut.pt")
    state = torch.load(tmp_path / "cut.pt", weights_only=True)["state"]
    assert (state["epoch"], state["step"]) == (3, 0)
    resumed = fit(_shuffled_spec(), _settings(), tmp_path / "cut.pt", resume=True)
    assert resumed["final"]["train_loss"] == full["final"]["train_loss"]
    assert resumed["final"]["test_mse"] == full["final"]["test_mse"]
    assert resumed["best"] == full["best"]


@pytest.mark.cuda
def test_resume_on_cuda_continues_to_the_same_final_metrics(tmp_path):
    # Checkpoints are loaded onto the CPU: their RNG and loader states must stay CPU tensors
    # (loading them onto the GPU made every resume there fail in numpy()).
    def on_model_device(model, loader):
        device = next(model.parameters()).device
        return sum(float(F.mse_loss(model(b["x"].to(device)), b["y"].to(device)))
                   for b in loader)

    def spec(loss=None):
        s = _shuffled_spec(loss)
        val = [{"x": x, "y": y} for x, y in s.val]
        test = [{"x": x, "y": y} for x, y in s.test]
        return TaskSpec(model=s.model, train=s.train, val=val, test=test,
                        evaluate=on_model_device, metric="mse", loss=s.loss,
                        higher_is_better=False)

    full = fit(spec(), _settings(device="cuda", amp=False), tmp_path / "full.pt")
    with pytest.raises(KeyboardInterrupt):
        fit(spec(_interrupted_at(10)), _settings(device="cuda", amp=False, checkpoint_every_s=0),
            tmp_path / "cut.pt")
    resumed = fit(spec(), _settings(device="cuda", amp=False), tmp_path / "cut.pt",
                  resume=True)
    assert resumed["final"]["train_loss"] == pytest.approx(full["final"]["train_loss"], rel=1e-6)
    assert resumed["best"]["epoch"] == full["best"]["epoch"]


def test_checkpoints_load_onto_the_cpu(tmp_path):
    from katbench.tracking import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"rng": {"torch": torch.get_rng_state()}})
    assert load_checkpoint(tmp_path / "c.pt")["rng"]["torch"].device.type == "cpu"


def test_max_hours_stops_after_the_epoch_and_evaluates_it(tmp_path):
    result = fit(_spec(), _settings(max_hours=1e-9, eval_every=5), tmp_path / "c.pt")
    assert result["stopped_early"] == "max_hours" and result["epochs_done"] == 1
    assert "test_mse" in result["final"]


def test_stop_request_checkpoints_mid_epoch_and_resume_is_exact(tmp_path):
    import signal

    from katbench.train import RunInterrupted, clear_stop, request_stop

    full = fit(_spec(), _settings(), tmp_path / "full.pt")
    steps = []

    def loss(model, batch):
        steps.append(1)
        if len(steps) == 10:          # epoch 3, step 2 of 4
            request_stop(signal.SIGTERM)
        return F.mse_loss(model(batch[0]), batch[1])

    try:
        with pytest.raises(RunInterrupted, match="stopped by SIGTERM in epoch 3 after step 2"):
            fit(_spec(loss), _settings(checkpoint_every_s=1e9), tmp_path / "cut.pt")
    finally:
        clear_stop()
    state = torch.load(tmp_path / "cut.pt", weights_only=True)["state"]
    assert (state["epoch"], state["step"]) == (2, 2)
    resumed = fit(_spec(), _settings(), tmp_path / "cut.pt", resume=True)
    assert resumed["final"] == {**full["final"], "epoch_time_s": resumed["final"]["epoch_time_s"],
                                "samples_per_s": resumed["final"]["samples_per_s"]}
    assert resumed["best"] == full["best"]


def test_wrong_types_name_the_key_and_the_type():
    with pytest.raises(ValueError, match=r"trainer.clip_grad_norm='x' has the wrong type; set "
                                         r"it to a number or null"):
        TrainerSettings.from_config({"clip_grad_norm": "x"})
    assert TrainerSettings.from_config({"lr": 1}).lr == 1.0


def test_compiled_runs_evaluate_through_the_compiled_model(tmp_path):
    compiled_calls = []

    def evaluate(model, loader):
        compiled_calls.append(isinstance(model, torch._dynamo.eval_frame.OptimizedModule))
        return _mse(model, loader)

    spec = _spec()
    spec.evaluate = evaluate
    compiled = fit(spec, _settings(epochs=2, compile=True), tmp_path / "c.pt")
    eager = fit(_spec(), _settings(epochs=2), tmp_path / "e.pt")
    assert compiled_calls and all(compiled_calls)
    assert compiled["final"]["test_mse"] == pytest.approx(eager["final"]["test_mse"], rel=1e-4)
