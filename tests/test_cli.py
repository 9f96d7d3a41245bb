"""The command line, run in-process through main(argv)."""

from __future__ import annotations

from pathlib import Path

import pytest

import lmmhmc
from lmmhmc import datasets
from lmmhmc.cli import main, read_data
from lmmhmc.results import format_table


def test_describe_bundled_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "observations: 180" in out
    assert "fixed effects (2): Intercept, Days" in out
    assert "factor Subject: 18 levels (308, 309, 310, 330, 331, ...)" in out
    assert "columns (2, correlated): 1|Subject, Days|Subject" in out


def test_describe_csv_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cake.csv"
    datasets.load("cake").to_csv(path, index=False)
    assert main(["describe", "angle ~ recipe + (1 | recipe/replicate)", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "factor recipe: 3 levels (A, B, C)" in out
    assert "factor recipe:replicate: 45 levels (A:1, A:2, A:3, A:4, A:5, ...)" in out


def test_describe_warns_about_dropped_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,x,g\n1.5,1,a\n2,,a\n3.1,3,b\n4,4.5,b\n5.2,5,c\n6,6.3,c\n")
    assert main(["describe", "y ~ x + (1 | g)", "--data", str(path)]) == 0
    captured = capsys.readouterr()
    assert "observations: 5" in captured.out
    assert captured.err == "warning: 1 row has missing values (in 'x'); dropped\n"
    assert main(["describe", "y ~ x + (1 | g)", "--data", str(path), "--na-action", "raise"]) == 2
    assert capsys.readouterr().err.startswith("error: 1 row has missing values")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_with_another_delimiter(
    delimiter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.csv"
    datasets.load("sleepstudy").to_csv(path, index=False, sep=delimiter)
    assert read_data(str(path)).columns.tolist() == ["Reaction", "Days", "Subject"]
    assert main(["describe", "Reaction ~ Days + (Days | Subject)", "--data", str(path)]) == 0
    assert "observations: 180" in capsys.readouterr().out


def test_describe_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,w,g\n1,1,a\n2,0.5,a\n3,2,b\n4,1,b\n")
    assert main(["describe", "y ~ 1 + (1 | g)", "--data", str(path), "--weights", "w"]) == 0
    assert "weighted" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["describe", "Reacton ~ Days + (Days | Subject)", "--data", "sleepstudy"],
            "error: column 'Reacton' not found in data; did you mean 'Reaction'?\n",
        ),
        (
            ["describe", "Reaction ~ Days + (| Subject)", "--data", "sleepstudy"],
            "error: random-effect term '(| Subject)' has an empty left-hand side\n",
        ),
        (
            ["describe", "y ~ 1 + (1 | g)", "--data", "sleepstudyy"],
            "error: unknown data set 'sleepstudyy'; did you mean 'sleepstudy'?",
        ),
        (
            ["describe", "y ~ 1 + (1 | g)", "--data", "missing.csv"],
            "error: data file 'missing.csv' not found\n",
        ),
    ],
)
def test_errors_are_one_line_with_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1


def test_datasets_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == datasets.list_datasets()
    assert any(line.startswith("InstEval ") and "lme4" in line for line in lines)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["describe", "y ~ x"])  # --data is required
    assert exc.value.code == 2
    assert "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["fit", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy",
              "--chain-method", "threads"])
    assert exc.value.code == 2
    assert ("--chain-method: invalid choice: 'threads' (choose from 'auto', 'parallel', "
            "'sequential', 'vectorized')") in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("lmmhmc 0.1.0")


def _settings_args(settings: dict) -> list[str]:
    """The command-line options of the shared fits' sampler settings (see conftest.py)."""
    return ["--chains", str(settings["chains"]), "--draws", str(settings["draws"]),
            "--warmup", str(settings["warmup"])]


def test_fit_prints_saves_and_plots(
    sleepstudy_fit, fit_settings: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plots = tmp_path / "fit.nc", tmp_path / "plots"
    argv = ["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy", "--seed", "1",
            "--out", str(out), "--plot", str(plots), *_settings_args(fit_settings)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    # same data, settings and seed as the sleepstudy_fit fixture: the same posterior
    expected = f"{sleepstudy_fit.header()}\n\n{format_table(sleepstudy_fit.summary())}\n"
    assert printed.startswith(expected)
    assert f"Saved the fit to {out}" in printed
    for name in ("trace", "forest", "ranef"):
        assert (plots / f"{name}.png").stat().st_size > 1000
        assert str(plots / f"{name}.png") in printed

    assert main(["summary", str(out)]) == 0
    assert capsys.readouterr().out == expected
    assert main(["summary", str(out), "--random-effects", "--hdi-prob", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "Days|Subject[372]" in printed and "hdi_5%" in printed


def test_fit_csv_with_named_terms(
    crossed_fit, fit_settings: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crossed.csv"
    crossed_fit.model.data.to_csv(path, index=False)
    argv = ["fit", "y ~ cond + center(x) + (1 | subj) + (1 | item)", "--data", str(path),
            "--marginalize", "subj, 1 | item", "--random-effects", *_settings_args(fit_settings)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Plan: marginalized: (1 | subj), (1 | item); sampled: none;" in printed
    assert "(user)" in printed
    for row in ("cond[T.b]", "center(x)", "1|item_sigma", "1|subj[s19]", "1|item[i14]"):
        assert f"\n{row} " in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "Reaction ~ Dys + (1 | Subject)", "--data", "sleepstudy"],
         "error: column 'Dys' not found in data; did you mean 'Days'?\n"),
        (["fit", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy",
          "--marginalize", "Sbj"],
         "error: marginalize='Sbj': no grouping term 'Sbj' in the model; terms are "
         "'1 | Subject'; marginalize takes 'auto', 'all', 'none' or a list of these terms (by "
         "text or factor)\n"),
        (["fit", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy", "--chains", "0"],
         "error: chains must be an integer >= 1, got 0\n"),
        (["summary", "nowhere.nc"], "error: file 'nowhere.nc' not found\n"),
    ],
)
def test_fit_and_summary_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == message


def test_hdi_prob_must_be_a_probability(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["summary", "fit.nc", "--hdi-prob", "94"])
    assert exc.value.code == 2
    assert "must be a number between 0 and 1, got '94'" in capsys.readouterr().err


def test_ctrl_c_is_one_line_with_status_130(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt("sampling interrupted by the user after 4 of 160 iterations")

    monkeypatch.setattr(lmmhmc.Model, "fit", interrupted)
    assert main(["fit", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy"]) == 130
    assert capsys.readouterr().err == (
        "interrupted: sampling interrupted by the user after 4 of 160 iterations\n")
