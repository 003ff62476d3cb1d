"""Help texts checked against the code: every method, editor and paste mode is named where the code offers it,
``--lambda-id`` says which phases it weighs, ``--pack`` names the embedded pack, and ``doctor`` prints no internal
references."""

from __future__ import annotations

import argparse

import pytest

from magec.cli.main import build_parser, main


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _help_of(parser: argparse.ArgumentParser, option: str) -> str:
    return next(a.help for a in parser._actions if option in a.option_strings)


def test_invert_help_names_every_method_in_its_words():
    from magec.inversion.config import METHODS

    parser = _subparser("invert")
    method_help, description = _help_of(parser, "--method"), parser.description
    for method in METHODS:  # in the option's help and the command's description, not only argparse's choices
        assert method in method_help, method
        assert method in description, method


def test_lambda_id_help_says_what_the_code_does():
    from magec.inversion.config import method_config

    text = _help_of(_subparser("invert"), "--lambda-id")
    assert "every phase that optimises the latent" in text and "never a noise phase" in text
    for method in ("magec", "no-magec", "im2stylegan++"):
        phases = method_config(method, lambda_id=0.123).phases
        assert all(p.identity == (0.123 if p.target == "latent" else 0.0) for p in phases), method
    defaults = {m: [p.identity for p in method_config(m).phases] for m in ("magec", "no-magec", "im2stylegan++")}
    assert defaults == {"magec": [3e-4, 3e-4], "no-magec": [3e-4, 3e-4], "im2stylegan++": [0.0, 0.0]}
    assert "default 3e-4" in text and "default 0" in text


def test_edit_help_names_every_editor_and_paste_mode(tone_pipeline):
    from magec.cli.cmd_edit import EDITORS, PASTE_MODES
    from magec.faces.paste import PASTE_MODES as LIBRARY_MODES

    parser = _subparser("edit")
    # every editor a pack (with StyleFlow) and the pipeline offer, in the option's help and the description
    editors = {*tone_pipeline.editors, "sefa", "styleflow"}
    assert editors <= set(EDITORS)
    names = {"interfacegan": "InterfaceGAN", "ganspace": "GANSpace", "sefa": "SeFa", "styleflow": "StyleFlow"}
    for editor in EDITORS:
        assert editor in _help_of(parser, "--editor")
        assert names.get(editor, "interpolation") in parser.description, editor
    mode_help = _help_of(parser, "--paste-mode")
    assert PASTE_MODES == LIBRARY_MODES and all(mode in mode_help for mode in PASTE_MODES)


@pytest.mark.parametrize("command", ["invert", "edit"])
def test_pack_is_optional_and_its_help_names_the_embedded_pack(command):
    from magec.cli.options import EMBEDDED_PACK_HELP
    from magec.prepare import EMBEDDED_PACK

    action = next(a for a in _subparser(command)._actions if "--pack" in a.option_strings)
    assert not action.required and action.default is None
    assert EMBEDDED_PACK_HELP in action.help and f"~/.cache/magec/{EMBEDDED_PACK}" in action.help


def test_doctor_prints_no_internal_references(capsys):
    main(["doctor"])
    out = capsys.readouterr().out
    assert "issue" not in out.lower()
