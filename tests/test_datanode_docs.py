"""Every data node setting is documented for operators."""

from __future__ import annotations

from pathlib import Path

from esgf_ha.datanode.settings import DataSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-node.md"


def test_every_setting_is_in_the_operator_guide() -> None:
    text = DOC.read_text()
    missing = [name for name in DataSettings.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/data-node.md does not mention: {missing}"
    assert all(field.description for field in DataSettings.model_fields.values())
