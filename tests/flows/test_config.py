"""Pipeline configuration: named YAML configs load; bad configs are refused naming the field."""

import pytest

from flows.config import CONFIG_DIR, ConfigError, load_config, parse_config

HEAD = {"name": "g", "type": "gaussian"}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_named_configs_are_valid(name):
    cfg = load_config(name)
    assert cfg.heads and cfg.problem.build().name == cfg.problem.name


def test_defaults_resolve_under_vardax_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VARDAX_HOME", str(tmp_path))
    cfg = parse_config({"heads": [HEAD]})
    assert cfg.resolved_store_root() == str(tmp_path / "stores")
    assert cfg.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert cfg.registered_model_name() == "vardax-lorenz96"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"problem": {"name": "nope"}, "heads": [HEAD]}, "problem"),
        ({"problem": {"name": "lorenz96", "overrides": {"bogus": 1}}, "heads": [HEAD]}, "problem"),
        ({"data": {"n_train": -5}, "heads": [HEAD]}, "data.n_train"),
        ({"data": {"n_heldout": 0}, "heads": [HEAD]}, "data.n_heldout"),
        ({"heads": [{"name": "x", "type": "transformer"}]}, "heads.0"),
        ({"heads": []}, "heads"),
        ({"heads": [HEAD, HEAD]}, "heads"),
        ({"heads": [HEAD], "surprise": 1}, "surprise"),
        ({"heads": [HEAD], "oracle": {"solver": "newton"}}, "oracle.solver"),
        ({"heads": [HEAD], "oracle": {"reference": {"n_chain": 4}}}, "oracle"),
        ({"heads": [{**HEAD, "simulate": {"n_pairs": 0}}]}, "heads.0"),
        ({"heads": [{**HEAD, "simulate": {"pairs": 10}}]}, "heads.0"),
        ({"heads": [HEAD], "oracle": {"reference": {"n_chains": 1}}}, "oracle"),
        ({"heads": [HEAD], "gates": {"settings": {"adjoint_statistic": "spectral"}}}, "gates"),
        ({"heads": [HEAD], "gates": {"settings": {"tolerance": 1.0}}}, "gates"),
        ({"heads": [HEAD], "gates": {"settings": {"sbc_draws": 100}}}, "gates"),
    ],
)
def test_bad_configs_name_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert f"  {field}" in str(err.value)


def test_release_profile_refuses_weaker_gate_settings_by_name():
    with pytest.raises(ConfigError) as err:
        parse_config({"heads": [HEAD], "gates": {"settings": {"sbc_runs": 100, "sbc_bins": 10,
                                                               "adjoint_threshold": 1.0, "adjoint_tail": 1.0}}})
    msg = str(err.value)
    assert "  gates" in msg and "sbc_runs 100" in msg and "adjoint_threshold 1.0" in msg and "exploration" in msg
    lax = parse_config({"heads": [HEAD], "gates": {"profile": "exploration",
                                                   "settings": {"sbc_runs": 100, "sbc_bins": 10}}})
    assert not lax.gates.gate_profile().certifies
    strict = parse_config({"heads": [HEAD], "gates": {"settings": {"sbc_runs": 2000, "adjoint_threshold": 0.03}}})
    assert strict.gates.gate_profile().certifies
    assert strict.gates.gate_profile().hash != parse_config({"heads": [HEAD]}).gates.gate_profile().hash


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="no config file"):
        load_config("does-not-exist")


def test_cli_prints_its_version(capsys):
    from flows.cli import main
    from vardax_core import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vardax {__version__}"


def test_consistency_needs_simulated_training_and_valid_settings():
    from flows.config import head_spec
    from vardax_core.amortized import ConsistencyConfig

    ok = head_spec(name="h", type="gaussian", simulate={"n_pairs": 1000, "epoch_pairs": 500},
                   consistency={"weight": 1.0})
    assert ok.consistency.core() == ConsistencyConfig(weight=1.0)
    with pytest.raises(ValueError, match="needs `simulate`"):
        head_spec(name="h", type="gaussian", consistency={"weight": 1.0})
    with pytest.raises(ValueError, match="n_samples"):
        head_spec(name="h", type="gaussian", simulate={"n_pairs": 1000, "epoch_pairs": 500},
                  consistency={"n_samples": 3})


def test_every_cli_command_says_what_it_does(capsys):
    from flows.cli import COMMANDS, main

    assert {"serve", "ui", "cycle", "gates", "promote", "status", "reprocess"} <= set(COMMANDS)
    for name, what in COMMANDS.items():
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert " ".join(what.split()) in out, name


def test_cli_serve_and_ui_start_the_servers(monkeypatch):
    from flows import cli, servers

    calls = []
    monkeypatch.setattr(servers, "serve", lambda port: calls.append(("serve", port)))
    monkeypatch.setattr(servers, "ui", lambda port, config: calls.append(("ui", port, config)))
    assert cli.main(["serve", "--port", "4300"]) == 0
    assert cli.main(["ui"]) == 0 and cli.main(["ui", "--port", "5001", "--config", "smoke"]) == 0
    assert calls == [("serve", 4300), ("ui", 5000, None), ("ui", 5001, "smoke")]


def test_overrides_by_dotted_path_are_validated_and_named():
    from flows.config import with_overrides

    base = load_config("smoke")
    cfg = with_overrides(base, {"data.n_train": 500, "heads.0.train.max_epochs": 2, "gates.seed": 3})
    assert cfg.data.n_train == 500 and cfg.heads[0].train.max_epochs == 2 and cfg.gates.seed == 3
    assert with_overrides(base, None) == base
    with pytest.raises(ConfigError, match="no section 'heads.4'"):
        with_overrides(base, {"heads.4.train.max_epochs": 2})
    with pytest.raises(ConfigError, match="data.n_train"):
        with_overrides(base, {"data.n_train": -1})
    with pytest.raises(ConfigError, match="surprise"):
        with_overrides(base, {"data.surprise": 1})
    with pytest.raises(ConfigError, match="sbc_runs 100"):  # the release profile still holds
        with_overrides(base, {"gates.settings": {"sbc_runs": 100, "sbc_bins": 10}})


def test_the_manual_run_form_lists_the_named_configs():
    from prefect.utilities.callables import parameter_schema

    from flows.config import named_configs
    from flows.cycle import named_cycle

    assert {"lorenz96", "lorenz96-gappy", "smoke"} <= set(named_configs())
    schema = parameter_schema(named_cycle.fn).model_dump()
    prop = schema["properties"]["config"]
    choices = prop.get("enum") or schema.get("definitions", {}).get(prop.get("$ref", "#/x/none").split("/")[-1],
                                                                    {}).get("enum")
    assert choices == list(named_configs()) and prop["default"] == "lorenz96"
    assert "overrides" in schema["properties"]


@pytest.mark.parametrize(
    "data, field, words",
    [
        # unknown keys and wrong types in every section, refused at load by their path
        ({"heads": [{**HEAD, "train": {"max_epoch": 5}}]}, "heads.0.gaussian.train.max_epoch", "Extra"),
        ({"heads": [{**HEAD, "train": {"max_epochs": "many"}}]}, "heads.0.gaussian.train.max_epochs", "integer"),
        ({"heads": [{**HEAD, "encoder": {"type": "mlp", "widht": 64}}]}, "heads.0.gaussian.encoder.mlp.widht", "Extra"),
        ({"heads": [{**HEAD, "encoder": {"type": "rnn"}}]}, "heads.0.gaussian.encoder", "rnn"),
        ({"heads": [{"name": "f", "type": "flow", "head": {"covariance": "full"}}]}, "heads.0.flow.head.covariance",
         "Extra"),
        ({"heads": [{**HEAD, "train": {"augment": "flip"}}]}, "heads.0.gaussian.train", "augment"),
        ({"heads": [HEAD], "oracle": {"solver": "strong", "settings": {"max_outer": 3}}},
         "oracle.settings.strong.max_outer", "Extra"),
        ({"heads": [HEAD], "oracle": {"reference": {"n_chains": "four"}}}, "oracle.reference.n_chains", "integer"),
        ({"heads": [HEAD], "emulator": {"train": {"epochs": 3}}}, "emulator.train.epochs", "Extra"),
        ({"heads": [HEAD], "emulator": {"model": {"kernel": 4}}}, "emulator.model", "odd"),
        # values this problem cannot take: checked against its shapes, naming the head
        ({"heads": [{**HEAD, "encoder": {"type": "conv2d"}}]}, "<root>", "heads.0 (g): encoder 'conv2d'"),
        ({"heads": [{**HEAD, "head": {"covariance": "banana"}}]}, "<root>", "heads.0 (g): head (gaussian)"),
    ],
)
def test_the_typed_tree_refuses_bad_keys_types_and_values_at_load(data, field, words):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    msg = str(err.value)
    assert f"  {field}" in msg and words in msg, msg


def test_sections_are_vardax_cores_own_configs():
    """Each typed section has the fields and defaults of the vardax_core config it feeds
    (generated from it, not restated) and hands vardax_core its own object."""
    import dataclasses

    from flows.config import ENCODERS, GateSettings, OracleSpec, TrainSection
    from vardax_core.amortized import ENCODER_DEFAULTS, TrainConfig
    from vardax_core.gates import GateConfig
    from vardax_core.oracle import StrongFourDVar

    assert set(TrainSection.model_fields) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainSection().core() == TrainConfig() and GateSettings().core() == GateConfig()
    assert set(ENCODERS) == set(ENCODER_DEFAULTS)
    assert ENCODERS["mlp"]().settings() == ENCODER_DEFAULTS["mlp"]
    solver = OracleSpec(solver="strong", settings={"gtol": 1e-8}).solver_instance()
    assert isinstance(solver, StrongFourDVar) and solver.gtol == 1e-8
    cfg = load_config("lorenz96")
    assert cfg.heads[1].type == "flow" and cfg.heads[1].head.flow_layers == 4
    assert cfg.heads[0].simulate.core().n_pairs == 1_000_000


def test_the_run_form_shows_the_sections_fields():
    """Prefect's form for a whole config lists real fields (with defaults) for the head
    variants, their training, the gates and the oracle — not free-form mappings."""
    from prefect.utilities.callables import parameter_schema

    from flows.cycle import six_step_cycle

    defs = parameter_schema(six_step_cycle.fn).model_dump()["definitions"]
    assert {"GaussianHeadSpec", "FlowHeadSpec", "ScoreHeadSpec", "TrainSection", "GateSettings"} <= set(defs)
    assert defs["TrainSection"]["properties"]["max_epochs"]["default"] == 100
    assert defs["GateSettings"]["properties"]["adjoint_threshold"]["default"] == 0.05
    assert "flow_layers" in defs["FlowArchitecture"]["properties"]
