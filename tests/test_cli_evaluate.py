"""``magec evaluate`` argument handling (the run itself is covered by the runner tests)."""

from __future__ import annotations

import pytest

from magec.cli.main import build_parser, main


def test_evaluate_needs_exactly_one_input_kind():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--pack", "P", "--out", "O"])
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--pack", "P", "--out", "O", "--images", "I", "--generated", "3"])
    args = parser.parse_args(
        ["evaluate", "--pack", "P", "--out", "O", "--generated", "3", "--methods", "magec", "no-magec"]
    )
    assert args.methods == ["magec", "no-magec"] and args.generated == 3


def test_missing_pack_is_a_one_line_error(tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "--pack",
                str(tmp_path / "nope"),
                "--generated",
                "2",
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("magec: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
