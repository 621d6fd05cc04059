"""Issue 13 (B, C): every mistake and every failed write of the command line is one line
on stderr (exit 2), never a traceback, and no temporary output file is left behind."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

import numpy as np
import pytest

from varprop.cli import build_parser, main
from varprop.reporting import commands, output


def _code(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def _one_line_error(argv, capsys, message, code=2):
    got = _code(argv)
    err = capsys.readouterr()
    assert got == code, err.err
    assert err.out == ""
    assert err.err.count("\n") == 1 and "Traceback" not in err.err, err.err
    assert message in err.err, err.err
    return err.err


HUGE = "99999999999999999999999"
BAD = [
    (["report", "--no-out", "--batch", "1"], "--batch must be >= 2; got 1"),
    (["report", "--no-out", "--analytic-only", "--depth", HUGE], "needs about"),
    (["report", "--no-out", "--width", HUGE], "needs about"),
    (["report", "--no-out", "--bias-var", "1e308"], "--bias-var must be <= 1e+12"),
    (["report", "--no-out", "--bias-var", "inf"], "--bias-var must be finite"),
    (["report", "--no-out", "--seeds", "1000000000"], "--seeds 1000000000"),
    (["report", "--no-out", "--analytic-only", "--depth", "1000000000"], "needs about"),
    (["report", "--no-out", "--threads", "100000"], "--threads"),
    (["report", "--no-out", "-i", ""], "--initializers got no names"),
    (["report", "--no-out", "-a", ","], "--activations got no names"),
    (["report", "--no-out", "-i", "sparse"], "cannot use initializer 'sparse'"),
    (["report", "--no-out", "-i", "dirac"], "cannot use initializer 'dirac'"),
    (["report", "--no-out", "-i", "delta_orthogonal"], "cannot use initializer 'delta_orthogonal'"),
    (["report", "--no-out", "-i", "torch_default_bias"],
     "cannot use initializer 'torch_default_bias'"),
    (["init", "random_normal", "--shape", "3", "3", "--param", "stddev=1" + "0" * 400],
     "--param stddev must be a finite number"),
    (["init", "random_normal", "--shape", "3", "3", "--param", "stddev=1e400"],
     "--param stddev must be a finite number"),
    (["init", "xavier_normal", "--shape", "3", "3", "--param", "gain=1e300"], "xavier_normal"),
    (["init", "he_normal", "--shape", HUGE, "3"], "needs"),
    (["demo", "--width", "1000000", "--batch", "1000000"], "needs about"),
    (["demo", "--depth", "1000000000000"], "needs about"),
    (["phase", "tanh", "--resolution", "2000", "2000"], "between 3 and 1000"),
    (["--version", "extra"], "invalid choice: 'extra'"),
    (["--version", "demo"], "--version takes no other arguments"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(argv, capsys, message)
    assert list(tmp_path.iterdir()) == []


def test_phase_memory_is_estimated_up_front(capsys, monkeypatch):
    monkeypatch.setattr(commands, "_memory_bytes", lambda: 4.0 * 2**30)
    _one_line_error(["phase", "tanh", "--resolution", "1000", "1000", "--no-out"], capsys,
                    "--resolution 1000 1000 (1000000 grid points) needs about")


def test_no_arguments_usage_on_stderr_exit_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.startswith("usage: varprop")
    assert "a COMMAND is required" in err.err


def test_version_alone_still_works(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("varprop ")


def _init_out(tmp_path, name="w.npy"):
    return ["init", "he_normal", "--shape", "3", "3", "-q", "--out", str(tmp_path / name)]


@pytest.mark.parametrize("err", [errno.EACCES, errno.ENOSPC])
def test_temporary_file_creation_failure_is_one_line(err, tmp_path, capsys, monkeypatch):
    # /sys as root: os.access says writable, creating the temporary file fails (EACCES);
    # a filesystem without free inodes fails the same call (ENOSPC)
    def refuse(*a, **k):
        raise OSError(err, os.strerror(err), str(tmp_path / ".w.npy.x.tmp"))

    monkeypatch.setattr(output.tempfile, "mkstemp", refuse)
    _one_line_error(_init_out(tmp_path), capsys, "cannot write")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_full_disk_or_no_inodes_is_one_line_and_leaves_nothing(err, tmp_path, capsys, monkeypatch):
    def fail(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(np, "save", fail)
    text = _one_line_error(_init_out(tmp_path), capsys, "cannot write")
    assert os.strerror(err) in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                       (signal.SIGINT, 130)])
def test_signal_during_the_write_removes_the_temporary(sig, code, tmp_path, capsys, monkeypatch):
    real_save = np.save

    def save_then_signal(fh, *a, **k):
        real_save(fh, *a, **k)
        os.kill(os.getpid(), sig)
        for _ in range(1000):  # the handler runs between bytecodes
            pass

    monkeypatch.setattr(np, "save", save_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    assert main(_init_out(tmp_path)) == code
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    assert "Traceback" not in capsys.readouterr().err


def test_write_is_still_atomic_and_complete(tmp_path, capsys):
    assert main(_init_out(tmp_path)) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["w.npy"]
    assert np.load(tmp_path / "w.npy").shape == (3, 3)


def test_one_seed_says_there_is_no_ci(capsys):
    assert main(["report", "-i", "he_normal", "-a", "relu", "--depth", "2", "--width", "8",
                 "--batch", "4", "--seeds", "1", "--threads", "1", "--no-out", "-q"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "95% CI" not in out and "no confidence interval" in out


def test_activation_aliases_are_accepted(capsys):
    assert main(["report", "--analytic-only", "-i", "he_normal", "-a", "swish", "--depth", "2",
                 "--no-out", "-q", "--format", "json"]) == 0
    assert '"silu"' in capsys.readouterr().out


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    missing = [f"{'varprop'} --{a.dest}" for a in parser._actions if not a.help]
    for name, sub in _subparsers(parser).items():
        missing += [f"varprop {name} {'/'.join(a.option_strings) or a.dest}"
                    for a in sub._actions if not a.help]
    assert missing == []
