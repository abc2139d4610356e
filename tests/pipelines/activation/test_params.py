"""Activation parameters are validated before any node runs: PQL rules parsed, tier shares bounded,
ranges ordered, audience names safe and unique; each error names the parameter and the audience."""

from __future__ import annotations

import pytest
from kedro.validation.exceptions import ParameterValidationError
from kedro.validation.parameter_validator import ParameterValidator
from pydantic import ValidationError

from aep_propensity.pipelines.activation import create_pipeline
from aep_propensity.pipelines.activation.params import ActivationParams
from tests.project_copy import copy_project, output_tail, run_shell

BAD_RULE = {"name": "gold_likely", "rule": 'loyalty.tier = "gold" and'}
GOOD_RULE = {"name": "women", "rule": 'person.gender = "female"'}


def refusal(**params) -> str:
    """The validation error of the activation parameters ``params`` (with a tenant), as text."""
    with pytest.raises(ValidationError) as error:
        ActivationParams.model_validate({"tenant": "acme", **params})
    return str(error.value)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"rules": [GOOD_RULE, {**GOOD_RULE, "name": "men"}, BAD_RULE]},
            ["rules.2.rule", "audience 'gold_likely'", "invalid PQL rule", "expected a field path"],
        ),
        ({"tiers": {"high": 1.5}}, ["tiers.high", "less than or equal to 1"]),
        ({"tiers": {"high": 0.1, "medium": 0}}, ["tiers.medium", "greater than 0"]),
        ({"tiers": {"high": 0.7, "medium": 0.5}}, ["tiers\n", "tier shares sum to 1.2", "high=0.7, medium=0.5"]),
        (
            {"tiers": {"high": 0.1}, "rules": [GOOD_RULE, {**GOOD_RULE, "name": "high"}]},
            ["audience name 'high' is used twice, by tiers.high and rules[1].name"],
        ),
        (
            {"tiers": {"high": 0.1}, "ranges": [{"name": "low", "min": 0.5}]},
            ["audience name 'low' is used twice, by low_tier and ranges[0].name"],
        ),
        (
            {"ranges": [{"name": "mid", "min": 0.2}], "rules": [{**GOOD_RULE, "name": "mid"}]},
            ["audience name 'mid' is used twice, by ranges[0].name and rules[0].name"],
        ),
        (
            {"ranges": [{"name": "mid", "min": 0.9, "max": 0.2}]},
            ["ranges.0", "audience 'mid': min 0.9 is above max 0.2"],
        ),
        ({"rules": [{**GOOD_RULE, "name": "../escape"}]}, ["rules.0.name", "invalid audience name '../escape'"]),
        ({"tiers": {"a/b": 0.1}}, ["tiers.a/b.[key]", "invalid audience name 'a/b'"]),
        ({"tiers": {"high": 0.1}, "low_tier": "the rest"}, ["low_tier", "invalid audience name 'the rest'"]),
    ],
    ids=[
        "bad rule",
        "share 1.5",
        "share 0",
        "shares sum above 1",
        "tier and rule share a name",
        "low tier and range share a name",
        "range and rule share a name",
        "range min above max",
        "rule name escapes its folder",
        "tier name escapes its folder",
        "low tier name with a space",
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter_and_audience(params, expected):
    message = refusal(**params)
    for part in expected:
        assert part in message, message


def test_valid_parameters_are_accepted():
    params = ActivationParams.model_validate(
        {
            "tenant": "acme",
            "tiers": {"high": 0.25, "medium": 0.75},
            "ranges": [{"name": "point", "min": 0.5, "max": 0.5}, {"name": "open"}],
            "rules": [GOOD_RULE],
        }
    )
    assert [name for name, _ in params.audience_names()] == ["high", "medium", "low", "point", "open", "women"]
    # without tiers there is no low tier, so its name is free
    ActivationParams.model_validate({"tenant": "acme", "ranges": [{"name": "low", "max": 0.1}]})


def test_kedro_validates_the_parameters_the_pipeline_takes_into_their_model():
    validator = ParameterValidator({"activation": create_pipeline()})
    expected = r"(?s)Parameter 'activation'.*rules\.0\.rule.*audience 'gold_likely'"
    with pytest.raises(ParameterValidationError, match=expected):
        validator.validate_raw_params({"activation": {"tenant": "acme", "rules": [BAD_RULE]}})


def test_a_bad_rule_stops_kedro_run_before_any_node(tmp_path):
    project = copy_project(tmp_path / "project")
    rule = f"- name: {BAD_RULE['name']}\\n  rule: {BAD_RULE['rule']}"
    result = run_shell(f"kedro run --params $'activation.rules={rule}'", project)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output_tail(result)
    assert "Running node:" not in output, output_tail(result)
    assert list((project / "data").iterdir()) == [], output_tail(result)
    for part in ("Parameter 'activation'", "rules.0.rule", "audience 'gold_likely'", "invalid PQL rule"):
        assert part in output, output_tail(result)
