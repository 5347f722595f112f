import copy
import math
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from advrobust.attacks import FGSM, PGD, StepLL
from advrobust.data import TensorLoader
from advrobust.training import (
    AdversarialTrainer,
    Callback,
    History,
    TrainConfig,
    mixed_batch_loss,
)


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long() + 2 * (
        x[:, 0, 0, 0] > 0.5
    ).long()
    return x, y


def _mlp(seed=1, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(16, 24)]
    if bn:
        layers.append(nn.BatchNorm1d(24))
    layers += [nn.ReLU(), nn.Linear(24, 4)]
    return nn.Sequential(*layers)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Record(Callback):
    def __init__(self):
        self.batches = []
        self.epochs = []

    def on_batch_end(self, trainer, info):
        self.batches.append(info)

    def on_epoch_end(self, trainer, stats):
        self.epochs.append(stats)


def test_training_trainer_clean_config_equals_plain_sgd_loop():
    x, y = _data()
    cfg = TrainConfig.clean(epochs=2, batch_size=16, lr=0.1, momentum=0.9, weight_decay=0.0)
    model = _mlp()
    ref = copy.deepcopy(model)
    rec = _Record()
    AdversarialTrainer(model, cfg).fit((x, y), callbacks=[rec], progress=False)
    assert len(rec.batches) == 12 and all(b.num_adv == 0 for b in rec.batches)
    # the batches cover the data once per epoch
    seen = torch.cat([b.y for b in rec.batches[:6]])
    assert sorted(seen.tolist()) == sorted(y.tolist())
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for b in rec.batches:
        opt.zero_grad()
        F.cross_entropy(ref(b.x), b.y).backward()
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_training_trainer_mixed_step_matches_algorithm_1():
    x, y = _data(32)
    eps = 0.05
    cfg = TrainConfig.kurakin(
        epochs=1,
        batch_size=32,
        lr=0.5,
        momentum=0.0,
        weight_decay=0.0,
        eps={"name": "fixed", "eps": eps},
        k=12,
    )
    model = _mlp()
    ref = copy.deepcopy(model)
    rec = _Record()
    AdversarialTrainer(model, cfg).fit((x, y), callbacks=[rec], progress=False)
    (info,) = rec.batches
    assert info.num_adv == 12 and info.replaced.tolist() == list(range(12))
    # which example of x each row of the mixed batch came from (adversarial rows are within
    # eps of their source, clean rows equal it)
    src = _sources(info, x)
    assert torch.equal(info.y, y[src])
    x_adv = StepLL(ref, eps=eps)(x[src[:12]], y[src[:12]])
    assert torch.allclose(info.x[:12], x_adv, atol=1e-6)
    assert torch.equal(info.x[12:], x[src[12:]])
    logits = ref(info.x)
    loss = mixed_batch_loss(logits[12:], y[src[12:]], logits[:12], y[src[:12]], 0.3)
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.5 * p.grad
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def _sources(info, x):
    """Index into x of each row of the loader batch (clean rows match exactly; adversarial
    rows are within eps of their source)."""
    flat = x.flatten(1)
    rows = info.x.flatten(1)
    d = torch.cdist(rows.double(), flat.double(), p=float("inf"))
    return d.argmin(dim=1)


def test_training_trainer_bn_running_stats_only_updated_by_training_forward():
    x, y = _data(64)
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16), nn.Linear(16, 4))
    bn = model[1]
    calls = []
    bn.register_forward_pre_hook(lambda mod, inp: calls.append((mod.training, inp[0].detach())))
    cfg = TrainConfig.kurakin(epochs=1, batch_size=16, lr=0.1)
    AdversarialTrainer(model, cfg).fit((x, y), progress=False)
    train_calls = [c for c in calls if c[0]]
    eval_calls = [c for c in calls if not c[0]]
    assert len(train_calls) == 4 and int(bn.num_batches_tracked) == 4
    assert len(eval_calls) >= 4  # the attack ran, in eval mode
    mean = torch.zeros(16)
    for _, inp in train_calls:
        mean = 0.9 * mean + 0.1 * inp.mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)
    assert model.training  # restored to train mode after fit


def test_training_trainer_keeps_a_frozen_batchnorm_child_frozen():
    x, y = _data(32)
    model = _mlp(bn=True)
    model[2].eval()  # frozen BatchNorm inside a model in train mode
    before = model[2].running_mean.clone()
    AdversarialTrainer(model, TrainConfig.kurakin(epochs=1, batch_size=16)).fit(
        (x, y), val_loader=(x, y), progress=False
    )
    assert model.training and not model[2].training
    assert torch.equal(model[2].running_mean, before)


def test_training_trainer_resume_is_bit_identical(tmp_path):
    x, y = _data()
    cfg = TrainConfig.kurakin(
        epochs=4,
        batch_size=16,
        lr=0.05,
        selection="random",
        scheduler={"name": "cosine"},
        attack={"name": "PGD", "steps": 2, "alpha": 0.02},
    )
    full = _mlp(bn=True)
    h_full = AdversarialTrainer(full, cfg).fit((x, y), val_loader=(x[:32], y[:32]), progress=False)
    part = _mlp(bn=True)
    AdversarialTrainer(part, cfg, checkpoint_dir=tmp_path).fit((x, y), epochs=2, progress=False)
    resumed = _mlp(seed=5, bn=True)
    tr = AdversarialTrainer(resumed, cfg, checkpoint_dir=tmp_path).resume()
    assert tr.epoch == 2 and len(tr.history) == 2
    h = tr.fit((x, y), val_loader=(x[:32], y[:32]), progress=False)
    assert _same(full, resumed)
    assert h.loss == h_full.loss and h.train_adv_acc == h_full.train_adv_acc
    assert h.val_adv_acc[2:] == h_full.val_adv_acc[2:]
    assert tr.optimizer.state_dict()["state"][0]["momentum_buffer"].shape == (24, 16)


def test_training_trainer_resume_with_user_tensor_loader(tmp_path):
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=3, lr=0.05)

    def loader():
        return TensorLoader(
            x, y, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7)
        )

    full = _mlp()
    AdversarialTrainer(full, cfg).fit(loader(), progress=False)
    part = _mlp()
    AdversarialTrainer(part, cfg, checkpoint_dir=tmp_path).fit(loader(), epochs=1, progress=False)
    resumed = _mlp(seed=3)
    AdversarialTrainer(resumed, cfg, checkpoint_dir=tmp_path).resume().fit(loader(), progress=False)
    assert _same(full, resumed)


class _InterruptAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, info):
        if info.step == self.step:
            raise KeyboardInterrupt


def test_training_trainer_ctrl_c_writes_checkpoint_and_resumes_mid_epoch(tmp_path):
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=2, batch_size=16, lr=0.05, selection="random")
    full = _mlp(bn=True)
    h_full = AdversarialTrainer(full, cfg).fit((x, y), progress=False)
    part = _mlp(bn=True)
    tr = AdversarialTrainer(part, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tr.fit((x, y), callbacks=[_InterruptAt(9)], progress=False)
    assert (tmp_path / "last.pt").is_file()
    resumed = _mlp(seed=9, bn=True)
    tr2 = AdversarialTrainer(resumed, cfg, checkpoint_dir=tmp_path).resume()
    assert (tr2.epoch, tr2.step) == (1, 9)
    h = tr2.fit((x, y), progress=False)
    assert _same(full, resumed)
    assert h.loss == pytest.approx(h_full.loss, rel=1e-12)


class _SigintInTrainingForward(nn.Module):
    """Sends SIGINT from inside the n-th train-mode forward, after BatchNorm has updated."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, h):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                signal.raise_signal(signal.SIGINT)
        return h


def test_training_trainer_ctrl_c_mid_step_is_deferred_to_a_consistent_checkpoint(tmp_path):
    # A real Ctrl-C arrives in the middle of a step (here: inside the training forward, after
    # the BatchNorm statistics moved). The step must complete before the interrupt is raised,
    # so that weights, buffers, counters and RNG in the checkpoint agree and resume is exact.
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=2, batch_size=16, lr=0.05, selection="random")

    def model(seed, at=0):
        net = _mlp(seed=seed, bn=True)
        return nn.Sequential(*net[:3], _SigintInTrainingForward(at), *net[3:])

    full = model(1)
    AdversarialTrainer(full, cfg).fit((x, y), progress=False)
    tr = AdversarialTrainer(model(1, at=8), cfg, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tr.fit((x, y), progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = model(9)
    tr2 = AdversarialTrainer(resumed, cfg, checkpoint_dir=tmp_path).resume()
    assert (tr2.epoch, tr2.step) == (1, 8)
    tr2.fit((x, y), progress=False)
    assert _same(full, resumed)


def test_training_trainer_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    x, y = _data(64)
    cfg = TrainConfig.kurakin(epochs=3, batch_size=16, lr=0.05, log_every=1)

    def reg(model, xb, yb):
        reg.calls += 1
        return torch.tensor(math.nan if reg.calls >= 6 else 0.0)

    reg.calls = 0
    model = _mlp()
    tr = AdversarialTrainer(model, cfg, checkpoint_dir=tmp_path, regularizer=reg)
    from advrobust.training import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="step 6") as err:
        tr.fit((x, y), progress=False)
    assert "last.pt" in str(err.value) and "epoch 1" in str(err.value)
    good = _mlp(seed=4)
    tr2 = AdversarialTrainer(good, cfg, checkpoint_dir=tmp_path).resume()
    assert tr2.epoch == 1 and tr2.step == 4
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_training_trainer_bad_input():
    x, y = _data(32)
    model = _mlp()
    with pytest.raises(ValueError, match="k must be <= the batch size"):
        AdversarialTrainer(model, TrainConfig(k=20, batch_size=16)).fit((x, y), progress=False)
    with pytest.raises(ValueError, match="adv_weight"):
        TrainConfig(adv_weight=-1.0)
    other = _mlp(seed=2)
    with pytest.raises(ValueError, match="attack attacks a different model"):
        AdversarialTrainer(model, attack=StepLL(other))
    with pytest.raises(ValueError, match="val_attack"):
        AdversarialTrainer(model).fit((x, y), val_loader=(x, y), val_attack=FGSM(other))
    with pytest.raises(TypeError, match="attack"):
        AdversarialTrainer(model, attack="StepLL")
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        AdversarialTrainer(model, TrainConfig(amp="fp16"))
    with pytest.raises(ValueError, match="optimizer"):
        AdversarialTrainer(model, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="config"):
        AdversarialTrainer(model, {"lr": 0.1})
    with pytest.raises(TypeError, match="train_loader"):
        AdversarialTrainer(model).fit(3, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        AdversarialTrainer(model).fit((x, y), epochs=0)
    with pytest.raises(TypeError, match="y must be a 1-D integer"):
        AdversarialTrainer(model).fit([(x, y.float())], progress=False)


def test_training_trainer_pgd_at_delay_labels_amp_and_loaders():
    x, y = _data(64)
    model = _mlp()
    atk = PGD(model, eps=0.05, alpha=0.02, steps=3)
    h = AdversarialTrainer(model, TrainConfig.pgd_at(epochs=1, batch_size=16), attack=atk).fit(
        (x, y), progress=False
    )
    assert h[0].train_clean_acc is None and h[0].adv_examples == 64
    rec = _Record()
    cfg = TrainConfig.kurakin(
        epochs=1, batch_size=16, delay=2, attack_labels="predicted", amp="bf16", grad_clip=1.0
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    h = AdversarialTrainer(_mlp(), cfg).fit(loader, callbacks=[rec], progress=False)
    assert [b.num_adv for b in rec.batches] == [0, 0, 8, 8]
    assert h[0].adv_examples == 16 and math.isfinite(h[0].loss)
    assert rec.epochs == list(h)
    assert History.from_dict(h.to_dict()).to_dict() == h.to_dict()


def test_training_trainer_int_k_scales_on_the_last_partial_batch():
    x, y = _data(40)
    rec = _Record()
    cfg = TrainConfig.kurakin(k=8, epochs=1, batch_size=16)
    AdversarialTrainer(_mlp(), cfg).fit((x, y), callbacks=[rec], progress=False)
    assert [b.num_adv for b in rec.batches] == [8, 8, 4]


def test_training_trainer_validation_and_progress_bar(capsys):
    x, y = _data(64)
    model = _mlp()
    tr = AdversarialTrainer(model, TrainConfig.kurakin(epochs=2, batch_size=16, lr=0.1))
    h = tr.fit((x, y), val_loader=(x, y), val_attack=FGSM(model, eps=0.1), progress=True)
    assert all(0.0 <= v <= 1.0 for v in h.val_clean_acc + h.val_adv_acc)
    clean, adv = tr.evaluate((x, y), attack=FGSM(model, eps=0.1))
    assert (clean, adv) == (h[-1].val_clean_acc, h[-1].val_adv_acc)
    err = capsys.readouterr().err
    assert "epoch 2" in err and "val clean" in err


class _OpRecorder(TorchDispatchMode):
    """Records the aten ops run while not paused."""

    def __init__(self):
        super().__init__()
        self.ops, self.paused = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_training_trainer_step_has_no_host_sync_or_host_to_device_copy():
    # On CUDA, .item()/float(t) (aten._local_scalar_dense) and tensors built from Python
    # numbers (aten.lift_fresh: new_tensor/torch.tensor, a blocking host-to-device copy)
    # stall the GPU every step. The trainer's own part of a step must have neither; the
    # attack is excluded (its input validation belongs to the attacks layer).
    x, y = _data(16)
    tr = AdversarialTrainer(
        _mlp(bn=True), TrainConfig.kurakin(batch_size=16, selection="random", log_every=1000)
    )
    rec = _OpRecorder()
    attack = tr.attack

    class Paused:
        def __call__(self, *args, **kwargs):
            rec.paused = True
            try:
                return attack(*args, **kwargs)
            finally:
                rec.paused = False

    tr.attack = Paused()
    with rec:
        tr.train_step(x, y, nominal_batch=16)
        tr.train_step(x[:10], y[:10], nominal_batch=16)
    assert "aten.native_batch_norm.default" in rec.ops  # the recorder saw the step
    assert not [op for op in rec.ops if "_local_scalar_dense" in op or "lift_fresh" in op]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
        {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-4},
    ],
)
def test_training_optimizer_is_multi_tensor_on_cpu_and_bit_identical_to_the_per_tensor_one(kwargs):
    from advrobust.training._build import build_optimizer

    cfg = TrainConfig.clean(epochs=1, batch_size=16, **kwargs)
    model, ref = _mlp(bn=True), _mlp(bn=True)
    opt = build_optimizer(model, cfg)
    assert opt.defaults["foreach"] is True
    name = kwargs["optimizer"]
    hyper = {k: v for k, v in kwargs.items() if k != "optimizer"}
    ref_opt = (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(
        ref.parameters(), foreach=False, **hyper
    )
    x, y = _data()
    for i in range(0, 96, 16):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            F.cross_entropy(m(x[i : i + 16]), y[i : i + 16]).backward()
            o.step()
    assert _same(model, ref)  # bit for bit, not approximately
    # a model on the meta device (no data) keeps torch's own choice
    meta = _mlp().to("meta")
    assert build_optimizer(meta, cfg).defaults["foreach"] is None
