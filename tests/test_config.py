from dataclasses import dataclass, field

import pytest

from fusion_datasets.config import ConfigError, apply_overrides, from_mapping, to_mapping


@dataclass(frozen=True)
class Inner:
    model: str = "m"
    threshold: float = 0.5
    urls: tuple[str, ...] = ()

    def __post_init__(self):
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    size: int | None = None
    enabled: bool = True
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_configs_and_converts_loose_yaml_numbers():
    config = from_mapping(Outer, {"size": 3, "inner": {"threshold": 1, "urls": ["a", "b"]}})
    assert config == Outer(size=3, inner=Inner(threshold=1.0, urls=("a", "b")))
    assert isinstance(config.inner.threshold, float)
    assert from_mapping(Outer, to_mapping(config)) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sise": 3}, "unknown key sise; allowed: enabled, inner, name, size"),
        ({"inner": {"modle": "y"}}, "unknown key inner.modle; allowed: model, threshold, urls"),
        ({"size": "many"}, "size: expected an integer, got 'many'"),
        ({"inner": {"threshold": "high"}}, "inner.threshold: expected a number, got 'high'"),
        ({"size": "1e3"}, "size: expected an integer, got '1e3'"),
        ({"enabled": "yes please"}, "enabled: expected true or false, got 'yes please'"),
        ({"size": True}, "size: expected an integer, got True"),
        ({"inner": {"urls": "a"}}, "inner.urls: expected a list, got 'a'"),
        ({"inner": {"threshold": 2}}, "inner: threshold must be between 0 and 1, got 2.0"),
        ({"inner": 5}, "inner: expected a mapping, got 5"),
    ],
)
def test_errors_name_the_field_the_value_and_what_is_allowed(data, message):
    with pytest.raises(ConfigError) as error:
        from_mapping(Outer, data)
    assert str(error.value) == message


def test_overrides_parse_values_as_yaml():
    data = {"inner": {"model": "a"}}
    result = apply_overrides(data, ["inner.threshold=0.25", "size=4", "enabled=false", "inner.urls=[u1, u2]"])
    assert from_mapping(Outer, result) == Outer(size=4, enabled=False, inner=Inner("a", 0.25, ("u1", "u2")))
    assert data == {"inner": {"model": "a"}}  # the input is left alone


def test_a_float_field_takes_exponent_notation_that_yaml_reads_as_a_string():
    assert apply_overrides({}, ["inner.threshold=5e-1"]) == {"inner": {"threshold": "5e-1"}}  # YAML 1.1
    assert from_mapping(Outer, apply_overrides({}, ["inner.threshold=5e-1"])).inner.threshold == 0.5
    assert from_mapping(Inner, {"threshold": "1E-2"}).threshold == 0.01


def test_a_text_holding_colons_is_taken_as_it_is():
    """YAML cannot read the first, and reads the second as a mapping: both are texts; braces make a mapping."""
    overrides = ["name=Cues: {cues_json}. Answer: yes", "inner.model=Answer: yes", "inner={model: b}"]
    assert apply_overrides({}, overrides[:2]) == {"name": "Cues: {cues_json}. Answer: yes",
                                                  "inner": {"model": "Answer: yes"}}
    assert from_mapping(Outer, apply_overrides({}, overrides)) == Outer(name="Cues: {cues_json}. Answer: yes",
                                                                        inner=Inner("b"))


def test_a_value_that_is_not_yaml_for_a_number_is_one_line_and_exit_2(tmp_path, capsys):
    from fusion_datasets.cli import main

    code = main(["run", "tiny", "--input", str(tmp_path), "--output", str(tmp_path / "out"),
                 "--set", "filter.threshold=low: [0.1", "--dry-run"])
    assert code == 2
    assert capsys.readouterr().err == "fusion-datasets: error: filter.threshold: expected a number, got 'low: [0.1'\n"


@pytest.mark.parametrize(("override", "message"), [("size", "key=value"), ("name.x=1", "name is 'x', not a mapping")])
def test_bad_overrides_are_explained(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"name": "x"}, [override])
