"""The candidate registry: duplicate names, unknown needs and names, third-party plug-ins."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from autoal import registry
from autoal.outputs import PoolOutputs
from autoal.registry import get_candidate, list_candidates, needs_of, register_candidate, run_candidate


@pytest.fixture
def restore_registry():
    """Whatever a test registers is gone afterwards, so other tests see the usual registry."""
    list_candidates()  # load the built-ins first, so they are part of the saved state
    saved, loaded = dict(registry._REGISTRY), registry._loaded
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    registry._loaded = loaded


def test_builtins_are_registered():
    assert {"entropy", "margin", "least_confidence", "bald", "var_ratio", "mean_std", "kmeans",
            "random"} <= set(list_candidates())
    assert needs_of(["entropy", "bald", "kmeans", "random"]) == {"probs", "mc_probs", "embeddings"}
    assert needs_of(["random"]) == frozenset()


def test_duplicate_name_raises(restore_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_candidate("entropy", needs={"probs"})(lambda out, *, budget, generator: out.probs[:, 0])
    assert get_candidate("entropy").fn.__module__ == "candidates.uncertainty"  # the original is kept


def test_unknown_needs_raise(restore_registry):
    with pytest.raises(ValueError, match="unknown outputs"):
        register_candidate("needs_logits", needs={"logits"})
    assert "needs_logits" not in list_candidates()


def test_unknown_kind_raises(restore_registry):
    with pytest.raises(ValueError, match="kind"):
        register_candidate("odd_kind", kind="ranking")


def test_unknown_candidate_error_lists_known_ones():
    with pytest.raises(KeyError) as info:
        get_candidate("entropyy")
    message = str(info.value)
    assert "entropyy" in message
    for name in ("entropy", "bald", "kmeans", "random"):
        assert name in message


def test_registered_in_a_few_lines_and_used_by_name(restore_registry):
    @register_candidate("first_class_prob", needs={"probs"})
    def first_class_prob(out, *, budget, generator):
        return out.require("probs")[:, 0]

    outputs = PoolOutputs(n=2, probs=torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    assert "first_class_prob" in list_candidates()
    torch.testing.assert_close(run_candidate("first_class_prob", outputs, budget=1), torch.tensor([0.2, 0.9]))


def test_entry_point_plugin_is_loaded(tmp_path, monkeypatch, restore_registry):
    """A package installed with an entry point in ``autoal.candidates`` is loaded without importing it."""
    (tmp_path / "autoal_test_plugin.py").write_text(textwrap.dedent("""
        from autoal.registry import register_candidate

        @register_candidate("plugin_second_class", needs={"probs"})
        def plugin_second_class(out, *, budget, generator):
            return out.require("probs")[:, 1]
    """))
    info = tmp_path / "autoal_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autoal-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[autoal.candidates]\nplugin = autoal_test_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "autoal_test_plugin", raising=False)

    assert "plugin_second_class" not in list_candidates()  # already loaded: entry points are read once
    monkeypatch.setattr(registry, "_loaded", False)
    assert "plugin_second_class" in list_candidates()
    outputs = PoolOutputs(n=2, probs=torch.tensor([[0.2, 0.8], [0.9, 0.1]]))
    torch.testing.assert_close(run_candidate("plugin_second_class", outputs, budget=1), torch.tensor([0.8, 0.1]))
    sys.modules.pop("autoal_test_plugin", None)


def test_broken_plugin_is_logged_not_fatal(tmp_path, monkeypatch, restore_registry, caplog):
    info = tmp_path / "autoal_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autoal-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[autoal.candidates]\nbroken = autoal_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    assert "entropy" in list_candidates()
    assert "could not load candidate plug-in broken" in caplog.text


# -- top-k with random tie-breaking --------------------------------------------------------------
def _var_ratio_like(n: int = 200) -> torch.Tensor:
    """Scores with T+1 = 3 distinct values, as var_ratio gives: 60 rows tie at the top value."""
    scores = torch.zeros(n)
    scores[torch.arange(0, n, 3)[:60]] = 0.5  # rows 0, 3, ..., 177: the top tier
    scores[torch.arange(1, n, 3)[:40]] = 0.25
    return scores


def test_top_k_ties_are_broken_by_the_generator():
    scores, k = _var_ratio_like(), 20
    top_tier = set(torch.arange(0, 200, 3)[:60].tolist())
    picks = {seed: registry.top_k_rows(scores, k, generator=torch.Generator().manual_seed(seed)) for seed in range(4)}
    for rows in picks.values():
        assert rows.shape == (k,) and rows.dtype == torch.long and len(rows.unique()) == k
        assert set(rows.tolist()) <= top_tier  # still the k highest scores
    lowest = sorted(top_tier)[:k]
    assert all(sorted(rows.tolist()) != lowest for rows in picks.values())  # not "lowest row wins"
    assert len({tuple(rows.tolist()) for rows in picks.values()}) == 4  # other seeds, other picks
    again = registry.top_k_rows(scores, k, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again, picks[2])  # the same generator state, the same picks


def test_top_k_orders_distinct_scores_best_first_and_spans_tiers():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.5, 0.3])
    rows = registry.top_k_rows(scores, 4, generator=torch.Generator().manual_seed(0))
    assert rows[0] == 1 and set(rows[1:3].tolist()) == {2, 3} and rows[3] == 4
    assert registry.top_k_rows(scores, 4).tolist() == [1, 2, 3, 4]  # no generator: the lower row first


def test_tied_picks_are_uniform_over_the_tied_rows():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # four rows tie, k = 1
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.cat([registry.top_k_rows(scores, 1, generator=g) for _ in range(2000)]), minlength=6)
    assert counts[1] == 0 and counts[4] == 0
    assert (counts[[0, 2, 3, 5]] > 400).all()  # each of the four about 500 times


def test_candidate_choice_breaks_var_ratio_ties_with_its_generator():
    """MC samples that agree everywhere except on a few rows: var_ratio is 0 for most of the pool."""
    n, t = 50, 4
    probs = torch.zeros(t, n, 3)
    probs[..., 0] = 1.0
    probs[:2, 40:, 0], probs[:2, 40:, 1] = 0.0, 1.0  # rows 40..49: two of four samples vote class 1
    out = PoolOutputs(n=n, mc_probs=probs)
    a = registry.candidate_choice("var_ratio", out, budget=15, generator=torch.Generator().manual_seed(0))
    b = registry.candidate_choice("var_ratio", out, budget=15, generator=torch.Generator().manual_seed(1))
    assert set(a[:10].tolist()) == set(range(40, 50)) == set(b[:10].tolist())  # the real signal first
    assert a[10:].tolist() != list(range(5)) and a[10:].tolist() != b[10:].tolist()  # the ties: at random
    again = registry.candidate_choice("var_ratio", out, budget=15, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, b)


# -- candidate parameters: name:key=value,key=value ---------------------------------------------
@pytest.fixture
def scaled(restore_registry):
    """A candidate with two parameters whose values show in its scores."""
    @register_candidate("scaled_first", needs={"probs"},
                        params={"scale": registry.Param(1.0, "factor", minimum=0.0),
                                "shift": registry.Param(0, "added", minimum=-5, maximum=5)})
    def scaled_first(out, *, budget, generator, scale, shift):
        return out.require("probs")[:, 0] * scale + shift

    return PoolOutputs(n=2, probs=torch.tensor([[0.2, 0.8], [0.9, 0.1]]))


def test_spec_parameters_reach_the_function(scaled):
    torch.testing.assert_close(run_candidate("scaled_first", scaled, budget=1), torch.tensor([0.2, 0.9]))
    torch.testing.assert_close(run_candidate("scaled_first:scale=2,shift=-1", scaled, budget=1),
                               torch.tensor([-0.6, 0.8]))
    cand = get_candidate("scaled_first:shift=3")
    assert cand.base == "scaled_first" and cand.values == {"scale": 1.0, "shift": 3}


def test_canonical_spec_drops_defaults_and_orders_keys(scaled):
    assert get_candidate("scaled_first:scale=1").name == "scaled_first"  # the default: the plain name
    assert get_candidate("scaled_first:shift=2, scale=0.5").name == "scaled_first:scale=0.5,shift=2"
    assert get_candidate("diversity:T=0.10").name == "diversity:T=0.1"
    assert get_candidate("diversity:T=0.5").name == "diversity"


@pytest.mark.parametrize("spec, problem", [
    ("scaled_first:scal=2", "has no parameter 'scal'"),
    ("scaled_first:shift=1.5", "shift=1.5 is invalid (expected int)"),
    ("scaled_first:shift=9", "shift=9 is invalid (above 5)"),
    ("scaled_first:scale=-1", "scale=-1 is invalid (below 0.0)"),
    ("scaled_first:scale=nan", "not a finite number"),
    ("scaled_first:scale", "is not key=value"),
    ("scaled_first:scale=1,scale=2", "sets scale twice"),
    ("scaled_first:", "nothing after ':'"),
])
def test_bad_parameters_are_one_line_user_errors_listing_the_valid_ones(scaled, spec, problem):
    with pytest.raises(registry.UserError) as info:
        get_candidate(spec)
    message = str(info.value)
    assert problem in message and "\n" not in message
    if "parameter" in problem or "invalid" in problem:
        assert "scale (float >= 0.0, default 1.0); shift (int >= -5 <= 5, default 0)" in message


def test_a_candidate_without_parameters_says_so():
    with pytest.raises(registry.UserError, match="has no parameter 'T'; it takes none; name it as plain entropy"):
        get_candidate("entropy:T=1")


def test_registration_refuses_parameters_the_function_does_not_take(restore_registry):
    with pytest.raises(ValueError, match=r"declares parameters \['T'\]"):
        register_candidate("no_t", params={"T": registry.Param(0.5)})(lambda out, *, budget, generator: out.probs)
    with pytest.raises(ValueError, match="may hold only"):
        register_candidate("bad:name")
    with pytest.raises(ValueError, match="not a float|below"):
        registry.Param(-1.0, minimum=0.0)  # a default outside its own bounds
    assert "no_t" not in list_candidates()


def test_candidate_lists_carry_specs_with_several_parameters(scaled):
    assert registry.split_specs("entropy, scaled_first:scale=2,shift=1 ,margin,") == [
        "entropy", "scaled_first:scale=2,shift=1", "margin"]
    assert registry.parse_candidates("entropy,diversity:T=0.10,scaled_first:scale=1") == [
        "entropy", "diversity:T=0.1", "scaled_first"]  # canonical names: what AutoAL keys its records by
    with pytest.raises(registry.UserError, match="twice .diversity in diversity,diversity:T=0.5"):
        registry.parse_candidates("diversity,diversity:T=0.5")  # the same candidate
    with pytest.raises(registry.UserError, match="--candidates: candidate 'diversity': T=-2 is invalid"):
        registry.parse_candidates("entropy,diversity:T=-2")
    assert registry.parse_candidates("diversity:T=0.1,diversity:T=0") == ["diversity:T=0.1", "diversity:T=0.0"]


def test_resolved_parameters_record_every_value_with_defaults(scaled):
    assert registry.resolved_parameters(["entropy", "scaled_first:shift=2", "diversity"]) == {
        "scaled_first:shift=2": {"scale": 1.0, "shift": 2}, "diversity": {"T": 0.5}}


def test_diversity_temperature_reaches_the_sampler():
    """T = 0 is k-center greedy, i.e. exactly coreset's picks; T = 0.5 is the default diversity."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(60, 3, generator=g)
    out = PoolOutputs(n=50, embeddings=emb[:50], labeled_embeddings=emb[50:])
    pick = lambda name: registry.candidate_choice(name, out, budget=8, generator=7).tolist()  # noqa: E731
    assert pick("diversity:T=0") == pick("coreset")
    assert pick("diversity:T=0.5") == pick("diversity")
    assert pick("diversity:T=0") != pick("diversity")


def test_batchbald_parameters_reach_it():
    """max_configs=1 makes BatchBALD sample from the second pick on; samples sets how many."""
    g = torch.Generator().manual_seed(0)
    mc = torch.softmax(torch.randn(6, 40, 3, generator=g) * 2, dim=2)
    out = PoolOutputs(n=40, mc_probs=mc)
    pick = lambda name: registry.candidate_choice(name, out, budget=6, generator=1).tolist()  # noqa: E731
    assert pick("batchbald") == pick("batchbald:max_configs=4096,samples=1024")
    assert pick("batchbald:max_configs=1,samples=2") != pick("batchbald")


def test_a_strategy_spec_makes_a_candidate_selector():
    from autoal.config import RunConfig
    from autoal.selectors import make_selector

    selector = make_selector("diversity:T=0.25", RunConfig())
    assert selector.name == "diversity:T=0.25" and "labeled_embeddings" in selector.needs
    with pytest.raises(registry.UserError, match="has no parameter 'x'"):
        make_selector("diversity:x=1", RunConfig())


def test_typiclust_parameters_reach_it():
    g = torch.Generator().manual_seed(0)
    out = PoolOutputs(n=200, embeddings=torch.randn(200, 4, generator=g))
    pick = lambda name: registry.candidate_choice(name, out, budget=5, generator=3).tolist()  # noqa: E731
    assert pick("typiclust") == pick("typiclust:k=20,max_clusters=500")
    assert pick("typiclust:k=2") != pick("typiclust")
    assert pick("typiclust:max_clusters=2") != pick("typiclust")
