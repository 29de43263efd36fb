"""The irreducible-representation analysis: characters computed in code, the cyclic case against the
Fourier analysis, planted S_n models, and no irreps where there is no group structure."""

import math

import numpy as np
import pytest
import torch

from grokscope.analysis import MemoryRun, analyze
from grokscope.analysis.groups.finite import cycle_type, cyclic_group, partitions, sn_character, symmetric_group
from grokscope.config import RunConfig
from grokscope.tasks import make_task
from planted import planted_config, planted_params, planted_sn_config, planted_sn_params, random_params


def sn(n):
    task = make_task(RunConfig().replace(**{"task.name": "perm_compose", "task.n": n}).task)
    return symmetric_group(task.perms, task.table), task


@pytest.mark.parametrize("n", [3, 4, 5])
def test_symmetric_group_characters(n):
    g, task = sn(n)
    assert len(g.irreps) == len(partitions(n)) and sum(r.dim ** 2 for r in g.irreps) == math.factorial(n)
    chars = np.stack([r.character for r in g.irreps])
    # orthonormal over the group: <chi_i, chi_j> = delta_ij
    np.testing.assert_allclose(chars @ chars.T / g.order, np.eye(len(g.irreps)), atol=1e-9)
    fixed = np.array([(p == np.arange(n)).sum() for p in task.perms])
    parity = np.array([(-1) ** (n - len(cycle_type(p))) for p in task.perms])
    by_label = {r.label: r.character for r in g.irreps}
    np.testing.assert_array_equal(by_label["trivial"], 1)
    np.testing.assert_array_equal(by_label["sign"], parity)
    np.testing.assert_array_equal(by_label["standard"], fixed - 1)  # permutation rep = trivial + standard
    q, owner = g.basis
    np.testing.assert_allclose(q.T @ q, np.eye(g.order), atol=1e-9)
    assert sn_character((n,), (1,) * n) == 1 and sn_character((n - 1, 1), (1,) * n) == n - 1


def test_cyclic_case_agrees_with_the_fourier_analysis():
    """Z_p's irreducibles are the frequencies: every measure must equal the Fourier analysis's, on
    checkpoints that blend a random model into the planted one."""
    freqs = [2, 5, 9]
    cfg = planted_config("add", 23, freqs)
    planted, rnd = planted_params("add", 23, freqs), random_params(cfg, 0)
    ckpts = {s: {k: (1 - t) * rnd[k] + t * planted[k] for k in planted} for s, t in [(0, 0.0), (100, 0.5), (200, 0.8), (300, 1.0)]}
    res = analyze(MemoryRun(cfg, make_task(cfg.task), ckpts), analyses=["fourier", "irreps"])
    s = res.summary
    assert s["irrep_group"] == "Z_23" and s["key_irreps"] == [str(k) for k in s["key_frequencies"]] == ["2", "5", "9"]
    assert s["neuron_irreps"] == s["neuron_clusters"]
    f, i = res.outputs["fourier"].tables["progress"], res.outputs["irreps"].tables["progress"]
    for col in ("restricted_loss_train", "restricted_loss_test", "restricted_acc_test", "excluded_loss_train"):
        np.testing.assert_allclose(i[col], f[col], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(i.frac_neurons_single_irrep, f.frac_neurons_single_frequency)
    # W_E shares: the Fourier analysis's norms per frequency, as shares
    emb = res.outputs["fourier"].tables["embed_fourier"]
    last = emb[emb.step == 300].set_index("freq")["norm"] ** 2
    shares = i.iloc[-1]
    for k in range(12):
        assert shares[f"W_E_share.{k}"] == pytest.approx(last.get(k, 0.0) / last.sum(), abs=1e-6)


@pytest.mark.parametrize("n,standard,sign,expect", [
    (4, 6.0, 6.0, ["(3,1)", "(1,1,1,1)"]),
    (4, 8.0, 0.0, ["(3,1)"]),
    (5, 6.0, 6.0, ["(4,1)", "(1,1,1,1,1)"]),
])
def test_planted_irreps_recovered_exactly(n, standard, sign, expect):
    cfg = planted_sn_config(n)
    task = make_task(cfg.task)
    params = planted_sn_params(cfg, standard, sign)
    res = analyze(MemoryRun(cfg, task, {0: params}))
    s = res.outputs["irreps"].summary
    assert s["irrep_group"] == f"S_{n}" and s["key_irreps"] == expect
    d_mlp = cfg.model.d_mlp
    sign_name = "(" + ",".join(["1"] * n) + ")"
    # the two sign neurons are there even when W_U does not read them: neurons alone make no key irrep
    assert s["neuron_irreps"] == {expect[0]: n ** 3, sign_name: 2, "unclustered": d_mlp - n ** 3 - 2}
    row = res.outputs["irreps"].tables["progress"].iloc[-1]
    for r in s["irreps"][1:]:
        planted_here = r["name"] in expect
        assert (row[f"logit_share.{r['name']}"] > 0.1) == planted_here
        if not planted_here:
            assert row[f"logit_share.{r['name']}"] < 1e-9
        if r["label"] not in ("standard", "sign"):  # W_E holds permutation matrices and signs only
            assert row[f"W_E_share.{r['name']}"] < 1e-9
    f = s["irrep_final"]
    # the logits are a function of a b in the planted irreps only: restricting changes nothing ...
    assert f["restricted_loss_train"] == pytest.approx(_loss(cfg, task, params), rel=1e-4)
    assert f["restricted_acc_test"] == 1.0
    # ... and excluding them leaves no information about the answer
    assert f["excluded_loss_train"] > 0.9 * math.log(math.factorial(n))


def _loss(cfg, task, params):
    from grokscope.models import make_model

    model = make_model(cfg, task)
    model.load_state_dict(params)
    b = task.batch("train")
    with torch.no_grad():
        logits = model(b.inputs)[:, -1].double()
    return float(torch.nn.functional.cross_entropy(logits, b.targets[:, 0]))


def _memorise(cfg, labels_of, steps=300, seed=0):
    """Full-batch AdamW on the training pairs with the labels `labels_of(inputs)` (no trainer needed)."""
    from grokscope.models import make_model

    task = make_task(cfg.task)
    torch.manual_seed(seed)
    model = make_model(cfg, task)
    b = task.batch("train")
    y = labels_of(b.inputs)  # b.targets[:, 0] is the true product
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(b.inputs)[:, -1], y).backward()
        opt.step()
    with torch.no_grad():
        assert (model(b.inputs)[:, -1].argmax(-1) == y).float().mean() == 1.0
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_no_irreps_on_a_random_table_or_random_weights():
    cfg = RunConfig().replace(**{"task.name": "perm_compose", "task.n": 4, "task.frac_train": 0.9,
                                 "model.d_model": 48, "model.n_heads": 2, "model.d_head": 24, "model.d_mlp": 96})
    task = make_task(cfg.task)
    table = torch.from_numpy(np.random.default_rng(0).integers(0, 24, size=(24, 24)))
    memorised = _memorise(cfg, lambda x: table[x[:, 0], x[:, 1]])
    for params in (memorised, random_params(cfg, 0), random_params(cfg, 1)):
        s = analyze(MemoryRun(cfg, task, {0: params})).outputs["irreps"].summary
        assert s["key_irreps"] == []
        ev = s["key_irrep_evidence"]
        assert all(ev["logit_share"][k] < ev["logit_share_needed"][k] for k in ev["logit_share"])


def test_irreps_on_a_run_directory_reach_the_report_and_the_cli(tmp_path, capsys):
    from grokscope.cli import main
    from grokscope.report import write_report
    from grokscope.runstore import RunStore

    cfg = planted_sn_config(4)
    task = make_task(cfg.task)
    store = RunStore(tmp_path / "run")
    store.write_config(cfg.to_dict(), {"grokscope": "test"})
    store.write_split(task.split_dict())
    planted, rnd = planted_sn_params(cfg), random_params(cfg, 0)
    for i, step in enumerate([0, 100, 200]):
        store.save_checkpoint(step, {k: (1 - i / 2) * rnd[k] + i / 2 * planted[k] for k in planted})
    store.save_metrics([{"step": s, "epoch": s, "train_loss": 1.0, "train_acc": 1.0, "test_loss": 1.0, "test_acc": 1.0,
                         "lr": 1e-3} for s in range(0, 201, 10)])
    assert main(["analyze", str(store.path)]) == 0
    assert "key irreps of S_4 ['(3,1)', '(1,1,1,1)']" in capsys.readouterr().out
    html = write_report(store.path).read_text()
    assert "Irreducible representations of S_4" in html  # the figure, not a missing-data note
    assert "key irreps of S_4" in html and "(3,1): 64" in html
