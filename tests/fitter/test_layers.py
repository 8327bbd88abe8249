"""The architecture holds: layers import one way, no import cycles, no hidden lazy imports, and
every stage is a package with one contract that the pipeline and the model check read."""

from __future__ import annotations

from fitter.config import REPO_ROOT, STAGES, Config
from fitter.pipeline import stage_hashes
from fitter.stages.registry import CONTRACTS
from tools import import_graph

GRAPH = import_graph.build()


def test_lower_layers_never_import_upper_ones():
    violations = [f"{i.source}:{i.line} imports {i.target}" for i in import_graph.layer_violations(GRAPH)]
    assert violations == []


def test_no_import_cycles():
    assert import_graph.cycles(GRAPH) == []


def test_project_modules_are_imported_lazily_only_for_optional_heavy_pieces():
    lazy = [f"{i.source}:{i.line} imports {i.target}" for i in import_graph.function_level(GRAPH)
            if (i.source, i.target) not in import_graph.LAZY_ALLOWED]
    assert lazy == []


def test_fitter_top_level_stays_small():
    assert import_graph.summary(GRAPH)["fitter_top_level_modules"] <= 12


def test_each_stage_is_a_package_with_one_contract_in_run_order():
    root = REPO_ROOT / "fitter" / "stages"
    assert [c.name for c in CONTRACTS] == list(STAGES)
    for contract in CONTRACTS:
        assert (root / contract.name / "__init__.py").is_file(), contract.name
        assert set(contract.reads) <= set(STAGES[:STAGES.index(contract.name)]), contract.name
        assert isinstance(contract.models(Config()), list)
    assert set(stage_hashes(Config(), {})) == set(STAGES[1:])  # every declared config section exists


def test_a_stage_imports_only_stages_that_run_before_it():
    later = []
    for i in GRAPH.imports:
        a, b = i.source.split("."), i.target.split(".")
        if a[:2] == b[:2] == ["fitter", "stages"] and len(a) > 2 and len(b) > 2 and a[2] in STAGES and b[2] in STAGES:
            if STAGES.index(b[2]) > STAGES.index(a[2]):
                later.append(f"{i.source}:{i.line} imports {i.target}")
    assert later == []
