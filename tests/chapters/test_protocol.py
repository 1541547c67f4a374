"""The chapter protocol: every chapter module follows it."""

import matplotlib

matplotlib.use("Agg")
import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from winning_ticket import chapters

from winning_ticket.chapters import landscape as ls
from winning_ticket.chapters import noise as nz
from winning_ticket.chapters import sample_complexity as sc


def test_profiles_exist():
    for cfg in (ls.LandscapeConfig, sc.SampleComplexityConfig, nz.NoiseConfig):
        for name in ("smoke", "book", "paper"):
            assert cfg.for_profile(name).profile == name
    paper = ls.LandscapeConfig.for_profile("paper")
    assert (paper.N, paper.d, paper.K, paper.trials) == (3000, 500, 5, 100)
    assert sc.SampleComplexityConfig.for_profile("paper").trials == 100
    assert (nz.NoiseConfig.for_profile("paper").N, nz.NoiseConfig.for_profile("paper").K) == (1000, 10)
    with pytest.raises(ValueError, match="^r "):
        sc.SampleComplexityConfig(d=10, r_values=(5, 20))
    with pytest.raises(ValueError, match="noise level"):
        nz.NoiseConfig(levels=(0.1, -0.1))

from winning_ticket.experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec
from winning_ticket.experiments.claims import Claim
from winning_ticket.experiments.profiles import PROFILES

SRC = Path(chapters.__file__).resolve().parents[1]
NOTEBOOKS = SRC.parents[1] / "notebooks"


@pytest.mark.parametrize("name", chapters.NAMES)
def test_chapter_follows_the_protocol(name):
    spec = chapters.get(name)
    module = inspect.getmodule(spec.run)
    assert isinstance(spec, ChapterSpec) and spec.name == name == module.__name__.rsplit(".", 1)[1]
    assert (NOTEBOOKS / f"{name}.ipynb").exists(), "the module is named after its notebook"
    # config: a frozen dataclass whose profiles are data, each of which builds
    assert issubclass(spec.config, ChapterConfig) and spec.config.__dataclass_params__.frozen
    assert set(spec.config.PROFILES) <= set(PROFILES)
    for profile in PROFILES:
        if profile == "evidence" and profile not in spec.config.PROFILES:
            with pytest.raises(ValueError, match="no 'evidence' profile"):
                spec.config.for_profile(profile)
            continue
        cfg = spec.config.for_profile(profile)
        assert cfg.profile == profile
        assert list(cfg.table().index)[-1] == "profile"
    assert dataclasses.fields(spec.config)[-1].name == "profile"
    # result: tidy tables named in TABLES, and a wall time
    assert issubclass(spec.result, ChapterResult)
    fields = {f.name for f in dataclasses.fields(spec.result)}
    assert {"config", "seconds"} <= fields and set(spec.result.TABLES) <= fields
    # run(config, *, executor=None, cache_dir=None, progress=None)
    sig = inspect.signature(spec.run)
    params = list(sig.parameters.values())
    assert params[0].name == "config" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert [(p.name, p.kind, p.default) for p in params[1:]] == [
        (n, inspect.Parameter.KEYWORD_ONLY, None) for n in ("executor", "cache_dir", "progress")]
    # check_claims(result): one argument; its docstring states every claim's rule
    assert list(inspect.signature(spec.check_claims).parameters) == ["result"]
    doc = inspect.getdoc(spec.check_claims) or ""
    source = inspect.getsource(module)
    claim_names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Claim":
            for kw in node.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    claim_names.add(kw.value.value)
    if "claims_for_metric" in doc:
        doc += inspect.getdoc(module.claims_for_metric)
    missing = {n for n in claim_names if f"``{n}``" not in doc}
    assert not missing, f"check_claims of {name} does not state the rule of {missing}"
    # every figure is a function with a docstring; every public function has one
    assert spec.figures and all(callable(f) for f in spec.figures.values())
    for attr, obj in vars(module).items():
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            assert inspect.getdoc(obj), f"{module.__name__}.{attr} has no docstring"


def test_invalid_configs_fail_at_construction():
    from winning_ticket.chapters import convergence as cv
    from winning_ticket.chapters import imp_mnist as im

    with pytest.raises(ValueError, match="max_iter"):
        cv.ConvergenceConfig(max_iter=0)
    with pytest.raises(ValueError, match="N_values"):
        im.MNISTIMPConfig(N_values=())
    with pytest.raises(ValueError, match="r_values"):
        cv.ConvergenceConfig(r_values=())
    # replace() validates again and marks the config custom
    cfg = cv.ConvergenceConfig.for_profile("smoke")
    assert cfg.replace(trials=1).profile == "custom"
    with pytest.raises(ValueError, match="trials"):
        cfg.replace(trials=0)


def test_unknown_chapter_and_profile_are_named():
    with pytest.raises(ValueError, match="chapter = 'nope'"):
        chapters.get("nope")
    with pytest.raises(ValueError, match="profile"):
        chapters.get("convergence").config.for_profile("huge")


def test_claims_verdicts_are_computed():
    c = Claim(name="x", statement="s", holds=False, statistic="t", rule="r")
    assert c.verdict == "NOT SUPPORTED"


def test_layers_import_downwards_only():
    """algorithms/ imports nothing from chapters/ and, of experiments/, only seeding, validation, progress."""
    allowed = {"seeding", "validation", "progress"}
    for path in (SRC / "algorithms").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if node.level == 2 or mod.startswith("winning_ticket."):
                    parts = mod.replace("winning_ticket.", "").split(".")
                    assert parts[0] != "chapters", f"{path.name} imports a chapter"
                    if parts[0] == "experiments":
                        assert parts[1] in allowed, f"{path.name} imports experiments.{parts[1]}"
    for path in (SRC / "experiments").glob("*.py"):
        text = path.read_text()
        assert "chapters" not in {n.module.split(".")[0] for n in ast.walk(ast.parse(text))
                                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 2}, path.name


@pytest.mark.parametrize("name", chapters.NAMES)
def test_every_parameter_is_described_and_its_range_enforced(name):
    """Each config field (but ``profile``) is a :func:`param` with a meaning; a value just outside its range fails."""
    cfg_cls = chapters.get(name).config
    described = cfg_cls.describe()
    fields = [f for f in dataclasses.fields(cfg_cls) if f.name != "profile"]
    assert list(described.index) == [f.name for f in fields]
    assert described["meaning"].str.len().min() > 3
    base = cfg_cls.for_profile("smoke")
    for f in fields:
        m = f.metadata
        if m["choices"] is not None:
            with pytest.raises(ValueError, match=f.name):
                base.replace(**{f.name: "no-such-choice"})
            continue
        low = m["low"]
        if low is None or isinstance(low, str):
            continue
        bad = low if m["low_open"] else (low - 1 if "int" in str(f.type) else low - 1e-9)
        value = (bad,) + tuple(getattr(base, f.name))[1:] if str(f.type).startswith("tuple") else bad
        with pytest.raises(ValueError, match=m["item"] or f.name):
            base.replace(**{f.name: value})


def test_configs_store_plain_values():
    import json

    import numpy as np

    from winning_ticket.chapters import convergence as cv

    cfg = cv.ConvergenceConfig(trials=np.int64(3), r_values=[30, np.int64(60)], lam=np.float32(0.5))
    assert type(cfg.trials) is int and cfg.r_values == (30, 60) and type(cfg.r_values[1]) is int
    json.dumps(dataclasses.asdict(cfg))  # provenance records must serialize
    with pytest.raises(ValueError, match="profile"):
        cv.ConvergenceConfig(profile="nope")
