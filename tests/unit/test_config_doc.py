"""docs/configuration.md is generated from the settings tree and must be current."""

from __future__ import annotations

from ops import gen_config_doc
from pipeline.settings import setting_paths


def test_checked_in_configuration_reference_is_current() -> None:
    assert gen_config_doc.main(["--check"]) == 0, "run: python -m ops.gen_config_doc"


def test_every_setting_is_documented_with_its_variable() -> None:
    text = gen_config_doc.render()
    for path, _field in setting_paths():
        assert f"`{gen_config_doc.env_name(path)}`" in text
    assert "`FACESTREAM_API_PORT`" in text and "`FACESTREAM_BOOTSTRAP_SERVERS`" in text
