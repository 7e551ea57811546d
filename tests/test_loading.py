"""A model that cannot be loaded is named in one paragraph that says what to do, whatever names it."""

import pytest

from fusion_datasets.clap.embed import load_clap
from fusion_datasets.errors import UserError


def test_a_hub_id_not_in_the_offline_cache_says_how_to_get_it():
    with pytest.raises(UserError) as raised:
        load_clap("laion/clap-htsat-unfused")  # the tests run offline with an empty Hub cache
    message = str(raised.value)
    assert message.startswith("cannot load the model 'laion/clap-htsat-unfused': ") and "\n" not in message
    assert "`hf download laion/clap-htsat-unfused`" in message and "HF_HUB_OFFLINE=1" in message


def test_a_public_local_name_is_not_taken_for_a_path():
    with pytest.raises(UserError, match=r"'local:clap': it is how an output names a local model, not a path"):
        load_clap("local:clap")


def test_a_folder_without_the_model_and_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match=r"The folder must hold the model's files \(config.json"):
        load_clap(str(tmp_path))
    missing = str(tmp_path / "no" / "clap")
    with pytest.raises(UserError, match=f"'{missing}': no such file or folder. Give the model's folder"):
        load_clap(missing)
