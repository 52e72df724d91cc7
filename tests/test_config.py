"""The configuration refuses, as it is read, what would otherwise fail or mislead later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from licanom.config import VendorConfigError, load_config, vendor_config



def _conf(tmp_path: Path) -> Path:
    """A conf/ folder in ``tmp_path`` with the shipped defaults and an empty vendors/ folder."""
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parents[1] / "conf" / "defaults.yaml").read_text())
    return conf


def _refused(conf: Path, vendor: str, text: str) -> str:
    """The configuration error of ``vendor`` with ``text`` as its file conf/vendors/<vendor>.yaml."""
    (conf / "vendors" / f"{vendor}.yaml").write_text(text)
    with pytest.raises(VendorConfigError) as err:
        vendor_config(vendor, conf)
    return str(err.value)

def test_a_stride_longer_than_a_chunk_is_refused() -> None:
    """The requests between two chunks were read, counted as scored in the ledger and never scored."""
    with pytest.raises(ValueError, match=r"stride \(500\) must not exceed size \(100\)"):
        load_config("demo", overrides={"chunk": {"size": 100, "stride": 500}})
    assert load_config("demo", overrides={"chunk": {"size": 100, "stride": 50}}).chunk.stride == 50


def test_a_key_set_twice_in_a_file_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """PyYAML keeps the later of two equal keys without a word: a block appended to a vendor's file
    dropped the one before it."""
    conf = _conf(tmp_path)
    (conf / "vendors" / "acme.yaml").write_text(
        "source: {kind: simulate}\ntrain: {epochs: 3}\nchunk: {size: 100}\ntrain: {batch_size: 64}\n")
    with pytest.raises(VendorConfigError, match=r"acme\.yaml line 4 column 1: .*'train' is set twice \(lines 2 and 4\)"):
        vendor_config("acme", conf)
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\ntrain: {epochs: 3, batch_size: 64}\n")
    cfg = vendor_config("acme", conf)
    assert (cfg.train.epochs, cfg.train.batch_size) == (3, 64)
    nested = "source: {kind: simulate}\ntrain:\n  epochs: 3\n  epochs: 4\n"
    (conf / "vendors" / "acme.yaml").write_text(nested)
    with pytest.raises(VendorConfigError, match=r"'epochs' is set twice \(lines 3 and 4\)"):
        vendor_config("acme", conf)


def test_each_setting_in_error_is_named_with_the_file_that_sets_it(tmp_path: Path) -> None:
    """A slip in conf/defaults.yaml was reported as the vendor's, and an operator searched the
    vendor's file for it."""
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    defaults = (Path(__file__).parents[1] / "conf" / "defaults.yaml").read_text()
    assert "\ntrain:\n" in defaults
    (conf / "defaults.yaml").write_text(defaults.replace("\ntrain:\n", "\ntrain:\n  epoch: 10\n", 1))
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\ntrain: {epochs: three}\n")
    with pytest.raises(VendorConfigError) as err:
        vendor_config("acme", conf)
    text = str(err.value)
    assert f"train.epochs: input should be a valid integer (got 'three') " \
           f"(in {conf / 'vendors' / 'acme.yaml'})" in text, text
    assert (f"train.epoch: extra inputs are not permitted (got 10) (did you mean 'epochs'?) "
            f"(in {conf / 'defaults.yaml'})") in text, text


def test_a_vendor_file_ending_in_yml_is_read_and_a_vendor_with_both_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/vendors/acme.yml was ignored: acme was an unknown vendor to serve and run, and its
    configuration the defaults alone."""
    import argparse

    from licanom.cli import vendor_name
    from licanom.config import list_vendors, unknown_vendor_message

    conf = _conf(tmp_path)
    (conf / "vendors" / "acme.yml").write_text("source: {kind: simulate, profile: node-locked}\ntrain: {epochs: 3}\n")
    (conf / "vendors" / "beta.yaml").write_text("source: {kind: simulate}\n")
    assert list_vendors(conf) == ["acme", "beta"]
    assert unknown_vendor_message("acme", conf) is None
    cfg = vendor_config("acme", conf)
    assert (cfg.source.kind, cfg.source.profile, cfg.train.epochs) == ("simulate", "node-locked", 3)
    assert load_config("acme", conf).train.epochs == 3
    # both: one of them would be ignored; refused in one line naming both files
    (conf / "vendors" / "acme.yaml").write_text("train: {epochs: 5}\n")
    both = f"vendor 'acme' has two files, {conf / 'vendors' / 'acme.yaml'} and {conf / 'vendors' / 'acme.yml'}: keep one"
    assert list_vendors(conf) == ["acme", "beta"]
    assert unknown_vendor_message("acme", conf) == both
    with pytest.raises(VendorConfigError) as err:
        vendor_config("acme", conf)
    assert str(err.value) == f"configuration error for vendor 'acme': {both}"
    assert "\n" not in str(err.value)
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))  # the command line's --vendor (serve, run, detect)
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        vendor_name("acme")
    assert str(refused.value) == both
    (conf / "vendors" / "acme.yaml").unlink()
    assert vendor_name("acme") == "acme"


def test_a_misspelt_context_threshold_is_named_once(tmp_path: Path) -> None:
    """`context.threshold: severty` was two errors in one message (one per member of the union of
    the decisions' names and auto), the setting named twice."""
    conf = _conf(tmp_path)
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\ncontext: {threshold: severty}\n")
    with pytest.raises(VendorConfigError) as err:
        vendor_config("acme", conf)
    text = str(err.value)
    assert text.count("context.threshold") == 1, text
    assert text == ("configuration error for vendor 'acme': context.threshold: input should be 'severity', 'M1', 'M2', "
                    f"'M3', 'quantile', 'pot', 'budget' or 'auto' (got 'severty') (in {conf / 'vendors' / 'acme.yaml'})")
    for name in ("auto", "severity", "M3"):
        (conf / "vendors" / "acme.yaml").write_text(f"source: {{kind: simulate}}\ncontext: {{threshold: {name}}}\n")
        assert vendor_config("acme", conf).context.threshold == name


def test_a_refused_setting_is_named_once_with_its_file(tmp_path: Path) -> None:
    """The setting was named twice: "context: context.threshold_params need a named
    context.threshold", "source.encoding: unknown source.encoding 'utf9'",
    "detect.threshold_params: threshold_params.stand_out_gap must be a number"."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    start = "configuration error for vendor 'acme': "
    assert _refused(conf, "acme", "source: {kind: simulate}\ncontext: {threshold_params: {alarm_rate: 0.01}}\n") == (
        f"{start}context.threshold_params: need a named context.threshold (not auto): got {{'alarm_rate': 0.01}} (in {vendor})")
    assert _refused(conf, "acme", "source: {kind: files, path: x.csv, encoding: utf9}\n") == (
        f"{start}source.encoding: unknown encoding 'utf9': use a Python codec name such as utf-8 or cp1252 "
        f"(in {vendor})")
    assert _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold_params: {stand_out_gap: true}}\n") == (
        f"{start}detect.threshold_params.stand_out_gap: must be a number, got True (in {vendor})")
    assert _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold: M3, threshold_params: {bins: null}}\n") == (
        f"{start}detect.threshold_params.bins: must not be null (only stand_out_gap may be: the night rule off) (in {vendor})")
    # a quoted number, refused by the decision's own check, is placed at its setting too
    assert _refused(conf, "acme", 'source: {kind: simulate}\ndetect: {threshold_params: {min_severity: "70"}}\n') == (
        f"{start}detect.threshold_params.min_severity: must be a number, got '70' (quoted in the file: write it "
        f"without quotes) (in {vendor})")


def test_a_misspelt_key_is_refused_with_the_key_it_lies_closest_to(tmp_path: Path) -> None:
    """`detect: {thresold: severity}` was refused as "extra inputs are not permitted", and the
    operator was left to find which key was meant; so was a decision's misspelt setting."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    start = "configuration error for vendor 'acme': "
    for text, refusal in (
            ("detect: {thresold: severity}", "detect.thresold: extra inputs are not permitted (got 'severity') "
                                             "(did you mean 'threshold'?)"),
            ("train: {modles: all}", "train.modles: extra inputs are not permitted (got 'all') (did you mean 'models'?)"),
            ("detct: {threshold: severity}", "detct: extra inputs are not permitted (did you mean 'detect'?)"),
            ("detect: {threshold: M3, threshold_params: {binz: 20}}",
             "detect.threshold_params: the M3 decision takes bins, index, got ['binz'] (did you mean 'bins'?)"),
            ("context: {threshold: severity, threshold_params: {min_severty: 70, stand_out_gapp: 5}}",
             "context.threshold_params: the severity decision takes min_severity, stand_out_floor, stand_out_gap, "
             "small_night_chunks, small_night_floor, small_night_gap, got ['min_severty', 'stand_out_gapp'] "
             "(did you mean 'min_severity' for 'min_severty', 'stand_out_gap' for 'stand_out_gapp'?)"),
            ("detect: {zzz: 1}", "detect.zzz: extra inputs are not permitted (got 1)")):  # nothing close: no guess
        assert _refused(conf, "acme", f"source: {{kind: simulate}}\n{text}\n") == f"{start}{refusal} (in {vendor})"


def test_a_decisions_unknown_or_wrong_setting_names_threshold_params(tmp_path: Path) -> None:
    """`detect: {threshold_params: {a: 1}}` was reported as "detect: the severity decision takes
    ...": the section, not the setting; the decision's check is now the setting's own."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    start = "configuration error for vendor 'acme': "
    assert _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold_params: {a: 1}}\n") == (
        f"{start}detect.threshold_params: the severity decision takes min_severity, stand_out_floor, "
        f"stand_out_gap, small_night_chunks, small_night_floor, small_night_gap, got ['a'] (in {vendor})")
    assert _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold: M3, threshold_params: {a: 1}}\n") == (
        f"{start}detect.threshold_params: the M3 decision takes bins, index, got ['a'] (in {vendor})")
    assert _refused(conf, "acme", "source: {kind: simulate}\ncontext: {threshold: budget, threshold_params: {alarm_rate: 5}}\n"
                    ).startswith(f"{start}context.threshold_params: ")
    # a misspelt decision is named once, as itself: its settings are not checked against no decision
    assert _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold: M4, threshold_params: {a: 1}}\n"
                    ).startswith(f"{start}detect.threshold: input should be ")


def test_a_decision_setting_of_the_wrong_shape_is_named_once(tmp_path: Path) -> None:
    """`min_severity: [70]` was three errors in one message, the setting named once for each type
    a decision's setting may be (number, integer, text): it is one, saying what the setting takes."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    start = "configuration error for vendor 'acme': "
    text = "source: {kind: simulate}\ndetect: {threshold: severity, threshold_params: {min_severity: [70]}}\n"
    assert _refused(conf, "acme", text) == (
        f"{start}detect.threshold_params.min_severity: must be a number, got [70] (in {vendor})")
    text = "source: {kind: simulate}\ncontext: {threshold: severity, threshold_params: {stand_out_gap: {a: 1}}}\n"
    assert _refused(conf, "acme", text) == (
        f"{start}context.threshold_params.stand_out_gap: must be a number or null (the night rule off), "
        f"got {{'a': 1}} (in {vendor})")


def test_an_unknown_model_says_what_all_and_sequence_train() -> None:
    """The message said "'sequence' (the four sequence models)" where train.models: sequence trains
    five (the Ergen models and DeepLog): the words now come from the catalog."""
    from licanom.detectors.catalog import AUTOENCODERS, ERGEN_MODELS, NEXT_EVENT_MODELS

    sequence = (*ERGEN_MODELS, *NEXT_EVENT_MODELS)
    assert load_config(overrides={"train": {"models": "sequence"}}).train.models == sequence
    with pytest.raises(ValueError) as err:
        load_config(overrides={"train": {"models": ["Nope"]}})
    text = str(err.value)
    assert f"'all' (the {len(AUTOENCODERS)} autoencoders)" in text, text
    assert f"'sequence' (the {len(sequence)} sequence models: {', '.join(sequence)})" in text, text


def test_a_decision_setting_written_as_text_is_refused_naming_the_setting_and_file(tmp_path: Path) -> None:
    """`min_severity: "70"` (quoted in YAML) was read as the number 70; a decision's settings are
    numbers (M3's bins also a numpy rule's name), and YAML's true is none."""
    from licanom.detectors.decision import check_decision

    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    text = 'source: {kind: simulate}\ncontext:\n  threshold: severity\n  threshold_params: {min_severity: "70"}\n'
    assert _refused(conf, "acme", text) == ("configuration error for vendor 'acme': context.threshold_params.min_severity: must be "
                              f"a number, got '70' (quoted in the file: write it without quotes) (in {vendor})")
    vendor.write_text("source: {kind: simulate}\ncontext:\n  threshold: severity\n  threshold_params: {min_severity: 70}\n")
    assert vendor_config("acme", conf).context.threshold_params == {"min_severity": 70}
    # the library's own check, whoever calls it: no text, no boolean, where a number is meant
    for name, params in (("severity", {"min_severity": "70"}), ("M3", {"index": True}), ("M1", {"split": "0.3"})):
        with pytest.raises(ValueError, match="must be a number"):
            check_decision(name, params)
    check_decision("M3", {"bins": "auto"})


def test_a_misspelt_simulated_profile_is_refused_as_the_configuration_is_read(tmp_path: Path) -> None:
    """`source.profile: floatin` passed the configuration and failed only when the night simulated
    its log, after the flow had started."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "beta.yaml"
    assert _refused(conf, "beta", "source: {kind: simulate, profile: floatin}\n") == ("configuration error for vendor 'beta': source.profile: input should be 'node-locked', "
                              f"'usage-based', 'floating' or 'mixed' (got 'floatin') (in {vendor})")
    vendor.write_text("source: {kind: simulate, profile: node-locked}\n")
    assert vendor_config("beta", conf).source.profile == "node-locked"
    from typing import get_args

    from licanom.config import SimProfile
    from licanom.sim import PROFILES

    assert get_args(SimProfile) == PROFILES  # the configuration's names are the simulator's


def test_a_cryptolens_source_without_its_product_is_refused_as_the_configuration_is_read(tmp_path: Path) -> None:
    """`source.kind: cryptolens` without product_id passed the configuration and failed only when
    the flow extracted the log, after it had started."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    assert _refused(conf, "acme", "source: {kind: cryptolens}\n") == ("configuration error for vendor 'acme': source: product_id is not set: a cryptolens "
                              "source reads one product's log; set product_id to the product's id, a whole number "
                              f"(its ProductId in Cryptolens) (in {vendor})")
    vendor.write_text("source: {kind: cryptolens, product_id: 12345}\n")
    assert vendor_config("acme", conf).source.product_id == 12345


def test_a_number_with_an_exponent_and_no_dot_is_a_number(tmp_path: Path) -> None:
    """PyYAML reads YAML 1.1, whose floats need a dot: an unquoted `alarm_rate: 1e-3` or
    `min_severity: 7e1` was the text "1e-3", refused as written in quotes. A quoted "70" still is."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    vendor.write_text("source: {kind: simulate}\ntrain: {lr: 1e-3}\n"
                      "context:\n  threshold: budget\n  threshold_params: {alarm_rate: 1e-3}\n")
    cfg = vendor_config("acme", conf)
    assert cfg.context.threshold_params == {"alarm_rate": 0.001} and cfg.train.lr == 0.001
    vendor.write_text("source: {kind: simulate}\ncontext:\n  threshold: severity\n  threshold_params: {min_severity: 7e1}\n")
    assert vendor_config("acme", conf).context.threshold_params == {"min_severity": 70.0}
    vendor.write_text('source: {kind: simulate}\ncontext:\n  threshold: severity\n  threshold_params: {min_severity: "70"}\n')
    with pytest.raises(VendorConfigError, match=r"got '70' \(quoted in the file: write it without quotes\)"):
        vendor_config("acme", conf)


@pytest.mark.parametrize(("text", "said"), [
    ("source: {kind: simulate, timezone: Mars/Olympus}\n",
     "source.timezone: unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Berlin or America/New_York"),
    ("source: {kind: files, path: x.csv, encoding: utf9}\n",
     "source.encoding: unknown encoding 'utf9': use a Python codec name such as utf-8 or cp1252"),
    ("source: {kind: simulate}\nschedule: {score_cron: '0 2 * *'}\n",
     "schedule.score_cron: '0 2 * *' is not a cron schedule: five fields"),
    ("source: {kind: simulate}\nschedule: {timezone: Europe/Berln}\n",
     "schedule.timezone: unknown time zone 'Europe/Berln': use an IANA name"),
])
def test_a_value_quoted_by_its_message_is_not_repeated_after_it(tmp_path: Path, text: str, said: str) -> None:
    """"unknown time zone 'Mars/Olympus': use an IANA name ... (got 'Mars/Olympus')": the value
    twice. A message that quotes the value is not followed by it again; one that does not still is."""
    conf = _conf(tmp_path)
    refused = _refused(conf, "acme", text)
    value = said.split("'")[1]
    assert said in refused and refused.count(repr(value)) == 1, refused
    assert "(got " not in refused, refused
    # the vendor's name as a setting (its own check, not the file's name)
    with pytest.raises(ValueError) as err:
        load_config(overrides={"vendor": "Bad"})
    from licanom.config import describe_error

    text = describe_error(err.value)
    assert text.startswith("vendor: invalid vendor name 'Bad': use 1-63") and text.count("'Bad'") == 1, text
    # a message that does not quote the value still ends with it
    assert _refused(conf, "acme", "source: {kind: simulate}\ntrain: {epochs: 0}\n").startswith(
        "configuration error for vendor 'acme': train.epochs: input should be greater than or equal to 1 (got 0) (in ")


def test_a_files_source_without_its_path_names_the_vendors_file(tmp_path: Path) -> None:
    """"source.path: the log's file or folder is not set" named no file, where every other setting's
    error names the one that sets it: it says which file to set it in (.yaml or .yml)."""
    conf = _conf(tmp_path)
    for name in ("acme.yaml", "beta.yml"):
        vendor = conf / "vendors" / name
        vendor.write_text("train: {epochs: 3}\n")
        with pytest.raises(VendorConfigError) as err:
            vendor_config(vendor.stem, conf)
        assert str(err.value) == (f"configuration error for vendor {vendor.stem!r}: source.path: the log's file or "
                                  f"folder is not set (source.kind is 'files'): set it in {vendor}"), err.value


def test_a_setting_whose_name_begins_like_a_type_is_named(tmp_path: Path) -> None:
    """`chunk: {stride: 0}` was reported as "chunk: input should be ...": the setting's name was
    taken for pydantic's "str" (a union member's name) and left out."""
    conf = _conf(tmp_path)
    assert _refused(conf, "acme", "source: {kind: simulate}\nchunk: {stride: 0}\n") == (
        "configuration error for vendor 'acme': chunk.stride: input should be greater than or equal to 1 (got 0) "
        f"(in {conf / 'vendors' / 'acme.yaml'})")
    # pydantic's own names in a setting's place are still left out (a decision's params: float, int, str)
    refused = _refused(conf, "acme", "source: {kind: simulate}\ndetect: {threshold_params: {min_severity: [70]}}\n")
    assert refused.startswith("configuration error for vendor 'acme': detect.threshold_params.min_severity: "), refused


def _numeric_settings(model: type, keys: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every int or float setting of ``model`` and its sections, as its keys (not a decision's
    threshold_params: their own check, tested above)."""
    from typing import get_args, get_origin

    from pydantic import BaseModel

    def numeric(annotation: object) -> bool:
        if get_origin(annotation) is dict:
            return False
        return annotation in (int, float) or any(numeric(a) for a in get_args(annotation))

    found = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        key = field.alias or name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += _numeric_settings(field.annotation, (*keys, key))
        elif numeric(field.annotation):
            found.append((*keys, key))
    return found


def test_a_number_in_quotes_is_refused_for_every_numeric_setting(tmp_path: Path) -> None:
    """`product_id: "12345"` was read as 12345 (pydantic's lax mode) where `min_severity: "70"` was
    refused as written in quotes: one rule for every number of the configuration, said the same way."""
    from licanom.config import Config, list_vendors

    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    assert _refused(conf, "acme", 'source: {kind: cryptolens, product_id: "12345"}\n') == (
        "configuration error for vendor 'acme': source.product_id: input should be a valid integer, got '12345' "
        f"(quoted in the file: write it without quotes) (in {vendor})")
    settings = _numeric_settings(Config)
    assert ("source", "product_id") in settings and ("train", "auto", "small_max_train_chunks") in settings
    assert len(settings) > 30, settings
    for keys in settings:
        data: dict[str, Any] = {"source": {"kind": "simulate"}}
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = "2"
        refused = _refused(conf, "acme", yaml.safe_dump(data))  # written '2'
        assert f"{'.'.join(keys)}: input should be a valid " in refused and \
            "got '2' (quoted in the file: write it without quotes)" in refused, refused
    # YAML's true is no number either; a whole number is a float setting's number
    assert "train.epochs: input should be a valid integer (got True)" in _refused(
        conf, "acme", "source: {kind: simulate}\ntrain: {epochs: true}\n")
    vendor.write_text("source: {kind: cryptolens, product_id: 12345}\nsequence: {period_hours: 24, tau: 100}\n")
    cfg = vendor_config("acme", conf)
    assert (cfg.source.product_id, cfg.sequence.period_hours, cfg.sequence.tau) == (12345, 24.0, 100.0)
    # the shipped configuration: the defaults and every vendor (the demo) read as they are
    shipped = Path(__file__).parents[1] / "conf"
    assert list_vendors(shipped)
    for name in list_vendors(shipped):
        assert load_config(name, shipped).vendor == name


def test_a_file_whose_name_is_no_vendors_is_not_listed_as_a_vendor_and_is_named_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/vendors/Bad.yaml (a name the vendor-name rule refuses) was listed among the vendors of an
    unknown vendor's message, and `licanom run nightly` scored it as one, failing at the end."""
    import argparse
    import logging

    from licanom.cli import vendor_name
    from licanom.config import ignored_vendor_files, list_vendors, unknown_vendor_message

    conf = _conf(tmp_path)
    assert ignored_vendor_files(conf) is None
    for name in ("acme.yaml", "Bad.yaml", "acme.old.yml", "beta.yml"):
        (conf / "vendors" / name).write_text("source: {kind: simulate}\n")
    assert list_vendors(conf) == ["acme", "beta"]
    ignored = (f"ignored, not vendors: {conf / 'vendors' / 'Bad.yaml'}, {conf / 'vendors' / 'acme.old.yml'} (a "
               "vendor's file is named <vendor>.yaml or .yml, the vendor 1-63 lower-case letters, digits, '-' or "
               "'_', starting with a letter or digit)")
    assert ignored_vendor_files(conf) == ignored
    message = unknown_vendor_message("zeta", conf)
    assert message is not None and message.endswith(f"; vendors: acme, beta; {ignored}"), message
    assert message.count("Bad") == 1 and "\n" not in message
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))  # the command line's --vendor says the same
    with pytest.raises(argparse.ArgumentTypeError, match="vendors: acme, beta; ignored, not vendors: "):
        vendor_name("zeta")
    # the nightly run's list: the vendors, and the ignored files once, in a warning
    from tasks.vendors import list_vendors as nightly_list

    warned: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("licanom.config")  # not caplog: Prefect, imported here, replaces the root's handlers
    logger.addHandler(handler)
    try:
        assert nightly_list.fn() == ["acme", "beta"]
    finally:
        logger.removeHandler(handler)
    assert warned == [ignored]


def test_mlflow_yaml_is_read_as_the_vendors_files_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.yaml was read by PyYAML's own YAML 1.1 loader: a key set twice kept the later one
    without a word, an unquoted 1e3 was the text "1e3" (a number in a vendor's file), and `no` or
    `on` became a boolean used as text (experiment "Falsedemo"). It is read by the vendors' loader,
    and a setting that is not text is refused naming the file and the setting."""
    from licanom.config import ConfigFileError
    from licanom.ops.tracking import TrackingConfig

    path = tmp_path / "mlflow.yaml"
    monkeypatch.setenv("LICANOM_MLFLOW_CONFIG", str(path))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    path.write_text("tracking_uri: sqlite:///a.db\nexperiment_prefix: x/\ntracking_uri: sqlite:///b.db\n")
    with pytest.raises(ConfigFileError, match=r"mlflow\.yaml line 3 column 1: .*'tracking_uri' is set twice "
                                              r"\(lines 1 and 3\): keep one"):
        TrackingConfig.load()
    for written, read in (("no", "False"), ("on", "True"), ("1e3", "1000.0"), ("12", "12")):
        path.write_text(f"experiment_prefix: {written}\n")
        with pytest.raises(ConfigFileError) as err:
            TrackingConfig.load()
        assert str(err.value) == f"{path}: experiment_prefix must be text, got {read} (write it in quotes)"
    path.write_text("tracking_uri: sqlite:///b.db\nregistry_uri: null\nexperiment_prefix: 'no/'\n")
    loaded = TrackingConfig.load()
    assert (loaded.tracking_uri, loaded.registry_uri, loaded.experiment_prefix) == (
        f"sqlite:///{tmp_path / 'b.db'}", f"sqlite:///{tmp_path / 'b.db'}", "no/")
    # the project's own file reads as it did
    monkeypatch.setenv("LICANOM_MLFLOW_CONFIG", str(Path(__file__).parents[1] / "mlflow.yaml"))
    shipped = TrackingConfig.load()
    assert (shipped.experiment_prefix, shipped.registered_model_prefix) == ("licanom/", "licanom-")


@pytest.mark.parametrize("keys", [("train", "models"), ("train", "auto", "small"), ("train", "auto", "large")])
@pytest.mark.parametrize(("written", "got"), [("5", " (got 5)"), ("true", " (got True)"), ("null", ""),
                                              ("{LSTM_AE: 1}", "")])
def test_models_that_are_no_name_nor_list_are_refused_naming_the_setting(
        tmp_path: Path, keys: tuple[str, ...], written: str, got: str) -> None:
    """`train.models: 5` was "'int' object is not iterable", naming neither the setting nor the file
    (the check's TypeError is no configuration error), and a mapping was read as its keys' list."""
    conf = _conf(tmp_path)
    text = "source: {kind: simulate}\n" + "".join(f"{'  ' * i}{key}:\n" for i, key in enumerate(keys[:-1]))
    text += f"{'  ' * (len(keys) - 1)}{keys[-1]}: {written}\n"
    assert _refused(conf, "acme", text) == (
        f"configuration error for vendor 'acme': {'.'.join(keys)}: must be a model's name or a list of names{got} "
        f"(in {conf / 'vendors' / 'acme.yaml'})")
    # a name, or a list of names, as before
    for names, read in (("TCN_AE", ("TCN_AE",)), ("[TCN_AE, Tail_context]", ("TCN_AE", "Tail_context"))):
        (conf / "vendors" / "acme.yaml").write_text(text.replace(f"{keys[-1]}: {written}", f"{keys[-1]}: {names}"))
        node: Any = vendor_config("acme", conf)
        for key in keys:
            node = getattr(node, key)
        assert node == read


@pytest.mark.parametrize("keys", [("train", "models"), ("train", "auto", "small"), ("train", "auto", "large")])
def test_names_written_with_a_comma_but_no_brackets_are_refused_showing_the_list(tmp_path: Path, keys: tuple[str, ...]) -> None:
    """`train: {models: a, b}` was refused as an unknown model 'a' and an unknown setting `train.b`
    (with real names, only "train.IForest_context: extra inputs are not permitted"), and `models:
    a, b` as an unknown model 'a, b': YAML reads the one as `models: a` and a setting `b`, the other as
    one text. Each is now refused in one line naming the key and the file and showing the list."""
    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    start = "configuration error for vendor 'acme': "
    key = keys[-1]
    braces = "source: {kind: simulate}\n" + "".join(f"{k}: {{" for k in keys[:-1]) + f"{key}: Tail_context, TCN_AE" \
        + "}" * (len(keys) - 1) + "\n"
    column = braces.splitlines()[1].index("TCN_AE") + 1
    assert _refused(conf, "acme", braces) == (
        f"{start}{vendor} line 2 column {column}: YAML syntax error: {{{key}: Tail_context, TCN_AE}} reads as {key}: "
        f"Tail_context and a setting 'TCN_AE' of no value: a list is written in brackets, {key}: [Tail_context, TCN_AE]")
    block = "source: {kind: simulate}\n" + "".join(f"{'  ' * i}{k}:\n" for i, k in enumerate(keys[:-1])) \
        + f"{'  ' * (len(keys) - 1)}{key}: Tail_context, TCN_AE\n"
    assert _refused(conf, "acme", block) == (
        f"{start}{'.'.join(keys)}: 'Tail_context, TCN_AE' is one text, not a list of names: write the list in "
        f"brackets, {key}: [Tail_context, TCN_AE] (in {vendor})")
    # the list, in brackets either way, is read as before
    for text in (braces.replace("Tail_context, TCN_AE", "[Tail_context, TCN_AE]"),
                 block.replace("Tail_context, TCN_AE", "[Tail_context, TCN_AE]")):
        vendor.write_text(text)
        node: Any = vendor_config("acme", conf)
        for k in keys:
            node = getattr(node, k)
        assert node == ("Tail_context", "TCN_AE")
    # a key with a colon and no value inside braces is a setting of its own, refused (or not) as before
    assert "a list is written in brackets" not in _refused(conf, "acme", "source: {kind: files, path: }\n")


def test_mlflow_yaml_refuses_an_unknown_setting_and_reads_null_as_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt `tracking_url:` was ignored without a word, and the runs went to the default local
    store; `experiment_prefix: null` made the experiments "Nonedemo". An unknown setting is refused
    naming the file, the setting, the close one and every one; a null setting is its default, as
    `registry_uri: null` is in the shipped file."""
    from licanom.config import ConfigFileError
    from licanom.ops.tracking import TrackingConfig

    path = tmp_path / "mlflow.yaml"
    monkeypatch.setenv("LICANOM_MLFLOW_CONFIG", str(path))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    known = "tracking_uri, registry_uri, artifact_location, experiment_prefix, registered_model_prefix"
    for text, said in (
            ("tracking_url: sqlite:///a.db\n", "unknown setting 'tracking_url' (did you mean 'tracking_uri'?)"),
            ("experiment_prefix: x/\nmodel_prefix: y-\n",
             "unknown setting 'model_prefix' (did you mean 'registered_model_prefix'?)"),
            ("store: sqlite:///a.db\nartifacts_location: a\n",
             "unknown settings 'store', 'artifacts_location' (did you mean 'artifact_location'?)")):
        path.write_text(text)
        with pytest.raises(ConfigFileError) as err:
            TrackingConfig.load()
        assert str(err.value) == f"{path}: {said}; its settings are {known}", text
    path.write_text("tracking_uri: null\nregistry_uri: null\nartifact_location: null\n"
                    "experiment_prefix: null\nregistered_model_prefix: null\n")
    loaded = TrackingConfig.load()
    assert (loaded.tracking_uri, loaded.experiment_prefix, loaded.registered_model_prefix) == (
        f"sqlite:///{tmp_path / 'mlflow.db'}", "licanom/", "licanom-")
    assert loaded.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()
    path.write_text("experiment_prefix: ''\nregistered_model_prefix: lic-\n")  # an empty prefix is one
    assert (TrackingConfig.load().experiment_prefix, TrackingConfig.load().registered_model_prefix) == ("", "lic-")


def _bool_settings(model: type, keys: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every true/false setting of ``model`` and its sections, as its keys."""
    from pydantic import BaseModel

    found = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        key = field.alias or name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += _bool_settings(field.annotation, (*keys, key))
        elif field.annotation is bool:
            found.append((*keys, key))
    return found


def test_a_boolean_in_quotes_is_refused_for_every_true_false_setting(tmp_path: Path) -> None:
    """`pseudonymise: "yes"` and `m1: "false"` were read as true and false (pydantic's lax mode),
    where a number in quotes is refused: a true/false setting takes YAML's true or false as written,
    and a quoted one is refused saying to write it without quotes (1 and 0 are no booleans either)."""
    from licanom.config import Config

    conf = _conf(tmp_path)
    vendor = conf / "vendors" / "acme.yaml"
    settings = _bool_settings(Config)
    assert {("detect", "m1"), ("privacy", "pseudonymise")} <= set(settings), settings
    for keys in settings:
        def refused(written: str, keys: tuple[str, ...] = keys) -> str:
            return _refused(conf, "acme", f"source: {{kind: simulate}}\n{keys[0]}: {{{keys[1]}: {written}}}\n")

        setting = ".".join(keys)
        for written, got in (('"yes"', "'yes'"), ("'false'", "'false'"), ('"On"', "'On'")):
            assert refused(written) == (f"configuration error for vendor 'acme': {setting}: input should be a valid "
                                        f"boolean, got {got} (quoted in the file: write it without quotes) (in {vendor})")
        for written, got in (("1", "1"), ("0", "0"), ('"1"', "'1'"), ("maybe", "'maybe'")):
            assert refused(written) == (f"configuration error for vendor 'acme': {setting}: input should be a valid "
                                        f"boolean (got {got}) (in {vendor})")
        for written, read in (("true", True), ("no", False), ("off", False), ("True", True)):
            vendor.write_text(f"source: {{kind: simulate}}\n{keys[0]}: {{{keys[1]}: {written}}}\n")
            assert getattr(getattr(vendor_config("acme", conf), keys[0]), keys[1]) is read


def test_the_librarys_files_source_without_its_path_names_the_vendors_file(tmp_path: Path) -> None:
    """The data path's own check said "source.kind is 'files' but source.path is not set", naming
    no file, where the configuration's names the vendor's: a source read from a vendor's
    configuration names the file to set source.path in (.yaml or .yml, or the one to write), one
    built in code the setting only."""
    from licanom.config import SourceConfig
    from licanom.data.pipeline import extract, extract_new

    conf = _conf(tmp_path)
    said = "source.path: the log's file or folder is not set (source.kind is 'files')"
    for name, text in (("acme.yaml", "train: {epochs: 3}\n"), ("beta.yml", "source: {encoding: cp1252}\n"),
                       ("gamma.yaml", None)):
        vendor = conf / "vendors" / name
        if text is not None:
            vendor.write_text(text)
        source = load_config(vendor.stem, conf).source
        for read in (lambda: extract(source), lambda: extract_new(source, after_id=5)):
            with pytest.raises(ValueError) as err:
                read()
            assert str(err.value) == f"{said}: set it in {vendor}", err.value
    with pytest.raises(ValueError) as err:
        extract(SourceConfig())
    assert str(err.value) == said
    # the file is where the settings were read, no setting: a dump of the settings is as before
    assert load_config("acme", conf).source.model_dump() == SourceConfig().model_dump()


def test_a_relative_source_path_is_read_from_the_current_folder_and_its_absence_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``source.path`` is read from the current folder (not the project's, as a relative
    output_dir is): a job started in another folder does not find it, and the refusal names the
    absolute path it looked for, on one line, rather than the relative one alone."""
    from licanom.data.extract.files import ExtractFileError
    from licanom.data.pipeline import extract

    conf = _conf(tmp_path)
    (conf / "vendors" / "beta.yaml").write_text("source:\n  kind: files\n  path: data/beta/tiny2.csv\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    source = load_config("beta", conf).source
    with pytest.raises(ExtractFileError) as err:
        extract(source)
    looked = elsewhere / "data" / "beta" / "tiny2.csv"
    assert str(err.value) == (f"no such log file or folder: data/beta/tiny2.csv (looked for {looked}: a relative "
                              "path, source.path or --logs, is read from the current folder)")
    (conf / "vendors" / "beta.yaml").write_text("source:\n  kind: files\n  path: data/beta/*.csv\n")
    with pytest.raises(ExtractFileError, match=r"found at data/beta/\*\.csv \(looked for .*elsewhere/data/beta/\*\.csv: "
                                               r"a relative path, source\.path or --logs, is read from the current folder\)$"):
        extract(load_config("beta", conf).source)
    looked.parent.mkdir(parents=True)
    looked.write_text("Id,ProductId,Key,IP,Time,State,MachineCode\n1,3,AAAA-BBBB,8.8.8.8,2025-03-01T00:00:00Z,1010,mc1\n")
    assert extract(load_config("beta", conf).source)["Id"].to_list() == ["1"]  # still the current folder's
    with pytest.raises(ExtractFileError, match=r"^no such log file or folder: /\S+/nope\.csv$"):  # absolute: as given
        extract(load_config("beta", conf, {"source": {"path": str(elsewhere / "nope.csv")}}).source)


def test_a_conf_folder_without_defaults_yaml_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With conf/defaults.yaml moved away, every command ran on the code's own defaults, which are not
    the shipped file's (encode.encoder thesis, not rows), without a word; and `licanom run` moved its
    Prefect home as if licanom were installed. Refused in one line naming the file; only licanom
    installed outside a checkout, with no conf/ at all and none named, reads the code's defaults."""
    import licanom.config
    from licanom.config import ConfigFileError
    from licanom.settings import is_checkout

    conf = _conf(tmp_path / "given")
    (conf / "defaults.yaml").unlink()
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\n")
    with pytest.raises(ConfigFileError) as err:
        load_config("acme", conf)
    assert str(err.value) == (f"{conf / 'defaults.yaml'} not found: a configuration folder needs its defaults.yaml "
                              "(copy the repository's conf/defaults.yaml there)")
    with pytest.raises(VendorConfigError, match=r"^configuration error for vendor 'acme': \S+defaults\.yaml not found"):
        vendor_config("acme", conf)
    # the project's own conf/ (a checkout: pyproject.toml beside it), which stays a checkout
    project = tmp_path / "project"
    (project / "conf" / "vendors").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'licanom'\n")
    monkeypatch.delenv("LICANOM_CONF_DIR", raising=False)
    monkeypatch.setattr(licanom.config, "DEFAULT_CONF_DIR", project / "conf")
    with pytest.raises(ConfigFileError) as err:
        load_config()
    assert str(err.value) == f"conf/defaults.yaml not found: {project / 'conf' / 'defaults.yaml'} (restore it from the repository)"
    assert is_checkout(project)
    # installed: no conf/ beside the package and no pyproject.toml, the code's own defaults
    monkeypatch.setattr(licanom.config, "DEFAULT_CONF_DIR", tmp_path / "site-packages" / "conf")
    assert load_config().encode.encoder == "thesis"
    assert not is_checkout(tmp_path / "site-packages")


def test_a_settings_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    """A defaults.yaml or vendor's file saved in another encoding (a Windows editor's cp1252 "é")
    raised Python's UnicodeDecodeError, which the flows' check let through as a bug (a traceback,
    exit 1): one line naming the file, a configuration error (exit 2) for the flows as for the rest."""
    from licanom.config import ConfigFileError, check_defaults

    conf = _conf(tmp_path)
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\n")
    defaults = conf / "defaults.yaml"
    text = defaults.read_bytes()
    defaults.write_bytes(b"# r\xe9glages\n" + text)
    with pytest.raises(VendorConfigError, match=r"^configuration error: \S+defaults\.yaml: not UTF-8 text \(byte 0xe9 "
                                                r"at position 3\): save it as UTF-8$"):
        check_defaults(conf)
    with pytest.raises(VendorConfigError, match=r"^configuration error for vendor 'acme': \S+defaults\.yaml: not UTF-8"):
        vendor_config("acme", conf)
    defaults.write_bytes(text)
    (conf / "vendors" / "acme.yaml").write_bytes(b"source: {kind: simulate}  # Soci\xe9t\xe9\n")
    with pytest.raises(ConfigFileError, match=r"acme\.yaml: not UTF-8 text"):
        load_config("acme", conf)


def test_a_tab_separator_is_taken_as_it_is_typed(tmp_path: Path) -> None:
    """`--separator '\\t'` (in a shell, the two characters backslash and t) was refused as "must be one
    character (',' ';' '\\t' '|')", a message listing what it refused; so was '\\t' in single quotes in
    a vendor's YAML. Both are a tab now; the message of another says how to write one."""
    from licanom.config import SourceConfig

    conf = _conf(tmp_path)
    for written in (r"'\t'", r"\t", '"\\t"', r"'\\t'"):  # YAML: escape, unquoted, a tab itself, doubled
        (conf / "vendors" / "acme.yaml").write_text(f"source: {{kind: files, path: x.tsv, separator: {written}}}\n")
        assert vendor_config("acme", conf).source.separator == "\t", written
    assert SourceConfig(separator="\\t").separator == "\t"  # the command line's --separator '\t'
    assert SourceConfig(separator=";").separator == ";"
    refused = _refused(conf, "acme", "source: {kind: files, path: x.csv, separator: ';;'}\n")
    assert refused.endswith("source.separator: must be one character: ',' ';' '|' or a tab, written \\t (got ';;') "
                            f"(in {conf / 'vendors' / 'acme.yaml'})"), refused
    # a letter or digit, as an unquoted \t reaches the command line: refused in YAML alike (the same check)
    refused = _refused(conf, "acme", "source: {kind: files, path: x.csv, separator: t}\n")
    assert refused.endswith("source.separator: 't' is a letter, which separates no CSV (a shell reads an unquoted \\t "
                            "as t): write a tab as '\\t' in quotes (--separator '\\t'), or give ',' ';' or '|' "
                            f"(in {conf / 'vendors' / 'acme.yaml'})"), refused
    assert "'0' is a digit" in _refused(conf, "acme", "source: {kind: files, path: x.csv, separator: '0'}\n")
