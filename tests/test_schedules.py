"""Learning-rate schedules: each epoch's lr against the formula written out here and against
torch.optim.lr_scheduler stepped once per epoch; bad arguments named."""

import math

import pytest

from xpnet.schedules import CosineAnnealingLR, ExponentialLR, MultiStepLR, StepLR

BASE = 0.3
EPOCHS = range(1, 13)

# (schedule, the lr of epoch e written out, torch's scheduler class name and keywords)
CASES = [
    (StepLR(3, gamma=0.5), lambda e: BASE * 0.5 ** ((e - 1) // 3), "StepLR",
     {"step_size": 3, "gamma": 0.5}),
    (MultiStepLR([2, 5, 9]), lambda e: BASE * 0.1 ** ((e > 2) + (e > 5) + (e > 9)),
     "MultiStepLR", {"milestones": [2, 5, 9]}),
    (ExponentialLR(0.8), lambda e: BASE * 0.8 ** (e - 1), "ExponentialLR", {"gamma": 0.8}),
    (CosineAnnealingLR(5, eta_min=0.01),
     lambda e: 0.01 + (BASE - 0.01) * (1 + math.cos(math.pi * (e - 1) / 5)) / 2,
     "CosineAnnealingLR", {"T_max": 5, "eta_min": 0.01}),
]  # fmt: skip
IDS = [case[2] for case in CASES]


@pytest.mark.parametrize(("schedule", "formula", "_", "__"), CASES, ids=IDS)
def test_each_epochs_lr_is_the_formulas(schedule, formula, _, __):
    assert [schedule.lr(BASE, e) for e in EPOCHS] == pytest.approx([formula(e) for e in EPOCHS])


@pytest.mark.parametrize("schedule", [case[0] for case in CASES], ids=IDS)
def test_the_first_epoch_runs_at_the_base_lr(schedule):
    assert schedule.lr(BASE, 1) == BASE


@pytest.mark.parametrize(("schedule", "_", "name", "kwargs"), CASES, ids=IDS)
def test_each_epochs_lr_is_torchs_scheduler_stepped_once_an_epoch(schedule, _, name, kwargs):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    scheduler = getattr(torch.optim.lr_scheduler, name)(optimizer, **kwargs)
    theirs = []
    for _epoch in EPOCHS:
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [schedule.lr(BASE, e) for e in EPOCHS] == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: StepLR(0), "step_size must be an integer >= 1, got 0"),
        (lambda: StepLR(2, gamma=0), "gamma must be a number > 0, got 0"),
        (lambda: ExponentialLR(-0.5), "gamma must be a number > 0, got -0.5"),
        (lambda: CosineAnnealingLR(0), "t_max must be an integer >= 1, got 0"),
        (lambda: CosineAnnealingLR(5, eta_min=-1.0), "eta_min must be a number >= 0, got -1.0"),
        (lambda: MultiStepLR([3, 3]), r"milestones must be increasing positive .* \[3, 3\]"),
        (lambda: MultiStepLR([0, 2]), r"increasing positive integers, got \[0, 2\]"),
        (lambda: MultiStepLR([]), r"increasing positive integers, got \[\]"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_a_value_error_naming_it(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_repr_gives_the_settings_as_torch_names_them():
    assert repr(StepLR(10, gamma=0.5)) == "StepLR(step_size=10, gamma=0.5)"
    assert repr(MultiStepLR([2, 4])) == "MultiStepLR(milestones=[2, 4], gamma=0.1)"
    assert repr(ExponentialLR(0.9)) == "ExponentialLR(gamma=0.9)"
    assert repr(CosineAnnealingLR(5)) == "CosineAnnealingLR(t_max=5, eta_min=0.0)"
