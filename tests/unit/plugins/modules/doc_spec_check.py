"""One check for every module whose options come from a doc fragment and a shared argument spec."""
from __future__ import annotations

import yaml


def assert_documentation_matches(documentation: str, fragment_documentation: str, fragment_spec: dict,
                                 argument_spec: dict) -> None:
    """The fragment documents exactly the shared spec; module and fragment together the whole spec."""
    fragment = yaml.safe_load(fragment_documentation)["options"]
    assert set(fragment) == set(fragment_spec)
    documented = dict(yaml.safe_load(documentation)["options"], **fragment)
    assert set(documented) == set(argument_spec)
    for name, option in argument_spec.items():
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("choices") == option.get("choices"), name
