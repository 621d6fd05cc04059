"""The ``varprop`` command end to end, through a subprocess as a user runs it: every
subcommand and format, the files it writes, stdout/stderr discipline, the progress bar
on a terminal, and bad input (one line on stderr, exit status 2, no file).

Sizes are small (depth 5, width 64, batch 64, 2 seeds, one thread) so the file runs in
well under a minute; tests/test_report.py covers the same code in process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _env import subprocess_env
from test_report import schema_errors
from varprop import __version__
from varprop.cli import build_parser, main
from varprop.reporting import load_schema

SMALL = ["--depth", "5", "--width", "64", "--batch", "64", "--seeds", "2", "--threads", "1"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    full_env = subprocess_env(**(env or {}))
    proc = subprocess.run([sys.executable, "-m", "varprop", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    return proc


def html_checks(html: str, n_sections: int) -> None:
    """Self-contained (no http/https anywhere, no scripts) and one figure per section."""
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?:", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    sections = re.findall(r"<section\b.*?</section>", html, re.S)
    assert len(sections) == n_sections
    for sec in sections:
        assert sec.count("<figure>") == 1 and sec.count("<img ") == 1
        assert 'src="data:image/png;base64,' in sec


# ----------------------------------------------------------------------------- basics
def test_version_and_help(tmp_path):
    assert run("--version", cwd=tmp_path).stdout.strip() == f"varprop {__version__}"
    top = run("--help", cwd=tmp_path).stdout
    for cmd in ("report", "phase", "init", "experiment", "demo"):
        assert cmd in top


@pytest.mark.parametrize("cmd", ["report", "phase", "init", "experiment", "demo"])
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: varprop {cmd}")


def test_no_command_prints_help_and_fails(capsys):
    # issue 13: argparse's convention, usage and the error on stderr, nothing on stdout
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage: varprop") and "report" in captured.err


# ----------------------------------------------------------------------------- report
def test_report_json_on_stdout_and_html_file(tmp_path):
    proc = run("report", "-i", "he_normal", "zeros", "orthogonal", "-a", "relu", "tanh",
               *SMALL, "--format", "json", "--out", "r.html", cwd=tmp_path)
    doc = json.loads(proc.stdout)  # stdout carries the result and nothing else
    assert schema_errors(doc, load_schema("report")) == []
    assert [(r["initializer"], r["activation"]) for r in doc["results"]] == [
        (i, a) for i in ("he_normal", "zeros", "orthogonal") for a in ("relu", "tanh")]
    he = doc["results"][0]
    assert he["verdict"] == "preserves" and he["measured"]["profile"]["kind"] == "empirical"
    assert doc["settings"]["depth"] == 5 and doc["settings"]["seeds"] == 2
    # stderr: no progress bar (not a terminal), only the note about the file
    assert proc.stderr.strip() == "varprop: wrote r.html"
    html_checks((tmp_path / "r.html").read_text(), 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp files left


def test_report_analytic_only_markdown_and_text_file(tmp_path):
    proc = run("report", "--analytic-only", "--depth", "8", "--format", "markdown",
               "--out", "table.txt", "-q", cwd=tmp_path)
    assert proc.stderr == ""
    md = proc.stdout
    assert md.startswith("## varprop report")
    rows = [ln for ln in md.splitlines() if ln.startswith("| `")]
    assert len(rows) == 13 * 7 + 13  # the default grid, then the verdict matrix
    table = (tmp_path / "table.txt").read_text()
    assert table.startswith("varprop report") and "Theory only" in table
    assert "he_normal" in table and "Verdicts at a glance (theory):" in table


def test_report_default_output_is_table_plus_html_report(tmp_path):
    proc = run("report", "-i", "he_normal", "-a", "relu", *SMALL, cwd=tmp_path)
    assert proc.stdout.startswith("varprop report\n")
    assert re.search(r"^he_normal\s+relu\s+0\.682\s+\S+ ± \S+\s+1\s+\S+ ± \S+\s+preserves"
                     r"\s+agree$", proc.stdout, re.M)  # the last column: the log-space test
    html_checks((tmp_path / "varprop-report.html").read_text(), 4)


def test_report_html_on_stdout_and_png_figure(tmp_path):
    proc = run("report", "--analytic-only", "-i", "lecun_normal", "-a", "selu", "tanh",
               "--format", "html", "--out", "fig.png", "-q", cwd=tmp_path)
    html_checks(proc.stdout, 4)
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- phase, init
def test_phase_json_and_html(tmp_path):
    proc = run("phase", "tanh", "--resolution", "9", "5", "--format", "json",
               "--out", "p.html", "-q", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert schema_errors(doc, load_schema("phase")) == []
    assert doc["activation"] == "tanh" and len(doc["sigma_w2"]) == 9 and len(doc["q_star"]) == 5
    assert doc["edge"][0]["sigma_w2"] == pytest.approx(1.0)
    html_checks((tmp_path / "p.html").read_text(), 1)


def test_phase_table_markdown_and_svg(tmp_path):
    table = run("phase", "relu", "--resolution", "7", "4", "--no-out", cwd=tmp_path).stdout
    assert "Edge of chaos" in table and "Trainable depth" in table and "note:" in table
    assert list(tmp_path.iterdir()) == []
    md = run("phase", "gelu", "--resolution", "7", "4", "--format", "markdown",
             "--out", "gelu.svg", "-q", cwd=tmp_path).stdout
    assert md.startswith("## varprop phase gelu") and "|---:|" in md
    svg = (tmp_path / "gelu.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_init_saves_the_draw_and_prints_moments(tmp_path):
    proc = run("init", "he_normal", "--shape", "256", "128", "--seed", "0", "--out", "w.npy",
               cwd=tmp_path)
    from varprop.initializers import get

    w = np.load(tmp_path / "w.npy")
    assert w.shape == (256, 128) and w.dtype == np.float32
    np.testing.assert_array_equal(w, get("he_normal")((256, 128), seed=0))
    out = proc.stdout
    assert "analytic" in out and "sample" in out and "fans: in 256, out 128" in out
    assert re.search(r"variance\s+0\.007812\s+0\.0078", out)
    assert proc.stderr.strip() == "varprop: wrote w.npy"


def test_init_json_and_markdown(tmp_path):
    doc = json.loads(run("init", "orthogonal", "--shape", "64", "32", "--format", "json",
                         cwd=tmp_path).stdout)
    assert schema_errors(doc, load_schema("init")) == []
    assert doc["analytic"]["structure"] == "orthogonal" and doc["out"] is None
    assert doc["sample"]["var"] == pytest.approx(doc["analytic"]["var"], rel=1e-5)
    md = run("init", "random_normal", "--param", "stddev=0.1", "--shape", "1000",
             "--format", "markdown", cwd=tmp_path).stdout
    assert "RandomNormal(mean=0.0, stddev=0.1)" in md and "| variance | 0.01 |" in md


def test_demo_still_works(tmp_path):
    out = run("demo", "--depth", "3", "--width", "32", "--batch", "16", cwd=tmp_path).stdout
    assert out.splitlines()[0].startswith("ReLU MLP, depth 3") and len(out.splitlines()) == 5


def test_experiment_prints_its_table_and_writes_its_figure(tmp_path):
    proc = run("experiment", "symmetry", "--out", "sym.png", "-q", cwd=tmp_path)
    assert proc.stdout.startswith("symmetry:") and "zeros" in proc.stdout
    assert proc.stderr == ""
    assert (tmp_path / "sym.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sym.png"]


# ----------------------------------------------------------------------------- progress
def _run_on_a_terminal(args: list[str], tmp_path: Path) -> tuple[str, bytes]:
    """stdout through a pipe, stderr on a pseudo-terminal: (stdout, what the tty got)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    env = subprocess_env(VARPROP_PROGRESS_DELAY="0")
    proc = subprocess.Popen([sys.executable, "-m", "varprop", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.communicate(timeout=300)[0].decode()
    os.close(master)
    assert proc.returncode == 0
    return stdout, b"".join(chunks)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_only_and_never_on_stdout(tmp_path):
    args = ["report", "-i", "he_normal", "orthogonal", "-a", "relu", "tanh", *SMALL, "--no-out"]
    stdout, tty = _run_on_a_terminal(args, tmp_path)
    assert b"\r[" in tty and b"%" in tty
    assert stdout.startswith("varprop report\n") and "\r" not in stdout
    _, tty_quiet = _run_on_a_terminal(args + ["--quiet"], tmp_path)
    assert b"\r[" not in tty_quiet


# ----------------------------------------------------------------------------- bad input
BAD = [
    (["report", "-i", "he_norml"], "unknown initializer 'he_norml'; did you mean 'he_normal'"),
    (["report", "-a", "rleu"], "unknown activation 'rleu'; did you mean 'relu'"),
    (["report", "--depth", "0"], "--depth must be a positive integer; got 0"),
    (["report", "--width", "-3"], "--width must be a positive integer; got -3"),
    (["report", "--batch", "0"], "--batch must be >= 2; got 0"),
    (["report", "--width", "100000000"], "needs about"),
    (["report", "--bias-var", "-1"], "--bias-var must be >= 0; got -1.0"),
    (["report", "--analytic-only", "--seeds", "3"], "--analytic-only measures nothing"),
    (["report", "--out", "a.html", "--no-out"], "contradict"),
    (["report", "--out", "nodir/r.html"], "does not exist"),
    (["report", "--out", "r.pdf"], "cannot tell the file format"),
    (["report", "--depth", "many"], "invalid int value"),
    (["phase", "tahn"], "did you mean 'tanh'"),
    (["phase", "tanh", "--sigma-w2", "3", "1"], "0 <= LOW < HIGH"),
    (["phase", "tanh", "--resolution", "2"], "between 3 and 1000"),
    (["init", "he_normal", "--shape", "0", "4"], "--shape entries must be a positive integer; got 0"),
    (["init", "orthogonal", "--shape", "5"], "cannot fill shape"),
    (["init", "he_normal", "--shape", "4", "--param", "bogus=1"], "unexpected parameter"),
    (["init", "he_normal", "--shape", "4", "--out", "w.txt"], "use one of .npy"),
    (["experiment", "irsi"], "did you mean 'iris'"),
    (["init", "he_normal", "--shape", "4", "--seed", "-1"],
     "--seed must be a non-negative integer; got -1"),
    (["demo", "--depth", "0"], "--depth must be a positive integer; got 0"),
    (["demo", "--seed", "-1"], "--seed must be a non-negative integer; got -1"),
]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors (a bad int, a bad choice)
        return int(exc.code)


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_in_process(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _exit_code(argv)
    err = capsys.readouterr()
    assert code == 2
    assert err.out == ""
    assert err.err.count("\n") == 1 and message in err.err, err.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["report", "-i", "xavier_normale"],
    ["report", "--width", "0", "--out", "r.html"],
    ["report", "--out", "missing/dir/r.html"],
    ["report", "--analytic-only", "--batch", "64", "--out", "r.html"],
    ["phase", "tanh", "--out", "p.doc"],
])
def test_bad_input_through_the_command(argv, tmp_path):
    proc = run(*argv, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("varprop ")
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- recurrent archs
def test_report_help_says_what_depth_and_width_mean_for_the_recurrent_archs(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{mlp,cnn,seeds_cnn,rnn,lstm,gru}" in text
    assert "time steps with --arch rnn/lstm/gru" in text  # --depth
    assert "state units (and input features) with --arch rnn/lstm/gru" in text  # --width
    assert "with --arch lstm/gru the weight layouts" in text  # --activations


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_report_recurrent_json_fits_the_schema_and_html_has_a_figure_per_section(tmp_path,
                                                                                arch):
    col = ["-a", "tanh"] if arch == "rnn" else ["-a", "keras"]
    proc = run("report", "--arch", arch, "-i", "orthogonal", *col, "--depth", "4", "--width",
               "8", "--batch", "8", "--seeds", "2", "--format", "json", "--out", "r.html",
               "-q", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert schema_errors(doc, load_schema("report")) == []
    assert doc["settings"]["arch"] == arch
    html_checks((tmp_path / "r.html").read_text(), 4)
