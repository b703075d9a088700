"""Code spaces: per-position choice sets, readable codes, tokens, canonical forms and their config."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, CodeArchitecture, CodeSpace, SearchSpace, canonical_form

DECISIONS = [("input1", [0, 1]), ("op1", ["conv3", "conv5", "skip"]), ("input2", [0, 1, 2]), ("op2", ["conv3", "skip"])]


@canonical_form
def skip_first(code: str) -> str:
    """Test form: ``op2`` is irrelevant when ``op1`` is ``skip`` (reads it as ``conv3``)."""
    parts = code.split("-")
    if parts[1] == "skip":
        parts[3] = "conv3"
    return "-".join(parts)


def unmarked(code: str) -> str:
    return code


def cell_space(**options) -> CodeSpace:
    return CodeSpace.from_decisions(DECISIONS, benchmark="cells", **options)


def test_each_position_has_its_own_named_choices():
    space = cell_space()
    assert [d.name for d in space.decisions] == ["input1", "op1", "input2", "op2"]
    assert [s.decision for s in space.slots] == [0, 1, 2, 3]  # one controller head per position
    assert space.size() == 2 * 3 * 3 * 2 == 36
    members = list(space.enumerate())
    assert len(members) == len(set(members)) == 36
    assert [str(m) for m in members[:3]] == ["0-conv3-0-conv3", "0-conv3-0-skip", "0-conv3-1-conv3"]
    arch = space.decode([1, 2, 2, 0])
    assert arch == CodeArchitecture("cells", "1-skip-2-conv3") and str(arch) == "1-skip-2-conv3"
    assert space.encode(arch) == [1, 2, 2, 0]
    assert space.parse("1-skip-2-conv3") == arch


def test_sample_and_mutate_stay_in_the_space_and_cover_every_choice():
    space = cell_space()
    rng = np.random.default_rng(0)
    drawn = [space.sample(rng) for _ in range(720)]
    counts = {m: 0 for m in space.enumerate()}
    for arch in drawn:
        counts[arch] += 1
    assert min(counts.values()) >= 8 and max(counts.values()) <= 35  # uniform: 20 expected per code
    for arch in drawn[:50]:
        child = space.mutate(arch, rng)
        assert space.contains(child)
        assert sum(a != b for a, b in zip(space.encode(arch), space.encode(child))) == 1


def test_tokens_out_of_a_positions_range_are_refused():
    space = cell_space()
    with pytest.raises(ArchsearchError, match="token 2 is not valid for 'input1' at position 0"):
        space.decode([2, 0, 0, 0])
    with pytest.raises(ArchsearchError, match="3 tokens, need 4"):
        space.decode([0, 0, 0])
    for code in ("0-conv3-0", "0-conv7-0-skip", "0-conv3-0-skip-1", "0conv30skip"):
        assert not space.contains(CodeArchitecture("cells", code))
    assert not space.contains(CodeArchitecture("other", "0-conv3-0-skip"))


def test_a_separator_of_ones_choosing_and_integer_choices():
    space = CodeSpace.from_decisions([("a", ["x", "y"]), ("b", [10, 20, 30])], separator="/")
    assert space.benchmark == "code"
    assert [str(m) for m in space.enumerate()] == ["x/10", "x/20", "x/30", "y/10", "y/20", "y/30"]
    single = CodeSpace.from_decisions([("a", ["0", "1"]), ("b", ["0", "1", "2"])], separator="")
    assert str(single.decode([1, 2])) == "12"


@pytest.mark.parametrize(
    ("decisions", "options", "message"),
    [
        ([], {}, r"^space\.decisions: need 1 to 64 positions, got 0"),
        ([("a", ["x"])], {}, r"^space\.decisions\[0\] \(a\): need two or more distinct"),
        ([("a", ["x", "x"])], {}, r"^space\.decisions\[0\] \(a\): need two or more distinct"),
        ([("a", [0, "0"])], {}, r"^space\.decisions\[0\] \(a\): need two or more distinct"),
        ([("a", [True, False])], {}, r"^space\.decisions\[0\] \(a\): need two or more distinct"),
        ([("a", [1.5, 2.5])], {}, r"^space\.decisions\[0\] \(a\): need two or more distinct"),
        ([("a", ["x-1", "y"])], {}, r"^space\.decisions\[0\] \(a\): each choice needs 1 to 64 .*separator '-'"),
        ([("a", ["", "y"])], {}, r"^space\.decisions\[0\] \(a\): each choice needs"),
        ([("a", ["ab", "c"])], {"separator": ""}, r"^space\.decisions\[0\] \(a\): .*single characters"),
        ([("a", "xy")], {}, r"^space\.decisions\[0\] \(a\): need a list of strings or integers"),
        ([("a", ["x", "y"]), ("a", ["x", "y"])], {}, r"^space\.decisions: names must differ"),
        ([("", ["x", "y"])], {}, r"^space\.decisions\[0\]: need a name of 1 to 64 characters"),
        ([("a", ["x", "y"], "z")], {}, r"^space\.decisions\[0\]: need a \(name, choices\) pair"),
        ([("a", ["x", "y"])] * 65, {}, r"^space\.decisions: at most 64 choices"),
        ([("a", ["x", "y"])], {"separator": 3}, r"^space\.separator: need text"),
        ([("a", ["x", "y"])], {"canonical": 3}, r"^space\.canonical: need a function"),
    ],
)
def test_bad_decisions_are_one_line_naming_the_field(decisions, options, message):
    with pytest.raises(ArchsearchError, match=message):
        CodeSpace.from_decisions(decisions, **options)


def test_the_first_form_is_unchanged():
    """``CodeSpace(benchmark, length, choices)``: one shared decision, codes without separator, its config."""
    space = CodeSpace("toy", 3, "012")
    assert space.decisions[0].name == "op" and [s.decision for s in space.slots] == [0, 0, 0]
    assert space.size() == 27 and str(space.decode([2, 0, 1])) == "201"
    assert space.to_config() == {"kind": "code", "benchmark": "toy", "length": 3, "choices": ["0", "1", "2"]}
    assert SearchSpace.from_config(space.to_config()) == space
    # the draws of a study of this form: one vector of draws per sample, as before
    assert str(space.sample(np.random.default_rng(5))) == "".join(
        "012"[i] for i in np.random.default_rng(5).integers(3, size=3)
    )
    with pytest.raises(ArchsearchError, match=r"^space\.choices: .* must be single characters"):
        CodeSpace("toy", 3, ["0", "12"])
    with pytest.raises(ArchsearchError, match=r"^space\.choices: need two or more distinct"):
        CodeSpace("toy", 3, "00")
    with pytest.raises(ArchsearchError, match=r"^space\.separator: codes of one shared choice set"):
        CodeSpace("toy", 3, "012", separator="-")
    single = CodeSpace.from_decisions([("op", ["0", "1"])], separator="")
    assert SearchSpace.from_config(single.to_config()) == single and "decisions" in single.to_config()
    with pytest.raises(ArchsearchError, match="a length and choices, or decisions"):
        CodeSpace("toy", 3)
    with pytest.raises(ArchsearchError, match="not both"):
        CodeSpace("toy", 3, "01", decisions=DECISIONS)


def test_a_config_round_trip_keeps_names_choices_and_the_canonical_reference():
    space = cell_space(canonical=skip_first)
    config = space.to_config()
    assert config == {
        "kind": "code",
        "benchmark": "cells",
        "decisions": [[name, list(choices)] for name, choices in DECISIONS],
        "separator": "-",
        "canonical": f"{skip_first.__module__}:skip_first",
    }
    rebuilt = SearchSpace.from_config(config)
    assert rebuilt == space and rebuilt.canonical is skip_first
    assert [str(m) for m in rebuilt.enumerate()] == [str(m) for m in space.enumerate()]


def test_equivalent_codes_hash_alike_through_the_spaces_canonical_form():
    space = cell_space(canonical=skip_first)
    a, b, c = space.parse("0-skip-1-skip"), space.parse("0-skip-1-conv3"), space.parse("0-conv5-1-skip")
    assert a != b and a.hash == b.hash
    assert a.hash != c.hash and c.hash != space.parse("0-conv5-1-conv3").hash
    assert len({m.hash for m in space.enumerate()}) == 36 - 6  # six codes skip op2
    # read back from JSON, an architecture has no space; validating it gives the member that hashes right
    read = Architecture.from_json(a.to_json())
    assert read == a and read.hash != a.hash
    assert space.validate(read).hash == a.hash
    assert a.to_dict() == {"kind": "code", "benchmark": "cells", "code": "0-skip-1-skip"}


def test_nas_bench_macro_hashes_are_those_of_studies_written_before():
    """An old config names no canonical form: NAS-Bench-Macro's is implied, and the hashes stay."""
    space = SearchSpace.from_config({"kind": "code", "benchmark": "nas-bench-macro", "length": 8, "choices": "012"})
    hashes = {c: space.parse(c).hash for c in ("22212220", "22212202", "01010000", "00110000")}
    assert hashes == {
        "22212220": "aa69cc4a43998470",
        "22212202": "aa69cc4a43998470",
        "01010000": "cd59ac852a16cb5d",
        "00110000": "e96cc715d624274c",
    }
    assert len({m.hash for m in space.enumerate()}) == 3969
    assert space.to_config()["canonical"] == "archsearch.evaluation._lookup:nas_bench_macro_canonical"
    assert CodeSpace("other", 8, "012").canonical is None


@pytest.mark.parametrize(
    "reference",
    [
        f"{__name__}:unmarked",  # imported, but not marked as a canonical form
        f"{__name__}:missing",
        "os:system",
        "archsearch.space:SearchSpace",
        "not-a-module:f",
        ":f",
        "archsearch.nowhere:f",
    ],
)
def test_a_stored_canonical_reference_is_refused_unless_marked_and_importable(reference):
    config = {**cell_space().to_config(), "canonical": reference}
    with pytest.raises(ArchsearchError, match=r"^space\.canonical: .* is not a canonical form this process can use"):
        SearchSpace.from_config(config)


def test_a_study_file_cannot_make_archsearch_import_a_module(tmp_path, monkeypatch):
    (tmp_path / "sideeffect.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').touch()\n"
        "from archsearch.space import canonical_form\n@canonical_form\ndef f(code):\n    return code\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {**cell_space().to_config(), "canonical": "sideeffect:f"}
    with pytest.raises(ArchsearchError, match="imported before the study is opened"):
        SearchSpace.from_config(config)
    assert not (tmp_path / "imported").exists()
    import sideeffect  # once the user's program has imported it, a study may name it

    assert SearchSpace.from_config(config).canonical is sideeffect.f
    monkeypatch.delitem(sys.modules, "sideeffect")


def test_a_lambda_is_a_canonical_form_in_memory_only():
    space = cell_space(canonical=lambda code: code.replace("conv5", "conv3"))
    assert space.parse("0-conv5-0-skip").hash == space.parse("0-conv3-0-skip").hash
    with pytest.raises(ArchsearchError, match=r"space\.canonical: .*<lambda>"):
        SearchSpace.from_config(space.to_config())
    with pytest.raises(ArchsearchError, match=r"^space\.canonical: gave None for code '0-conv3-0-skip', not a code"):
        _ = cell_space(canonical=lambda code: None).parse("0-conv3-0-skip").hash
