"""Console output: theanets.log and the per-epoch training lines.

While :mod:`logging` is not configured, theanets prints timestamped lines to
standard output (as Theano-era theanets did); configuring logging takes
over. pytest's own log capture counts as configured logging, so the tests
that check the default remove the root logger's handlers for a moment.
"""

import contextlib
import datetime
import io
import logging
import re

import pytest

import theanets

LINE = re.compile(r"^(\d{8} \d{6}) theanets (.*)$")


@contextlib.contextmanager
def unconfigured_logging():
    """Run the block as if the program had not configured logging."""
    root = logging.getLogger()
    ours = logging.getLogger("theanets")
    handlers, level = root.handlers[:], ours.level
    for handler in handlers:
        root.removeHandler(handler)
    ours.setLevel(logging.NOTSET)
    try:
        yield
    finally:
        for handler in handlers:
            root.addHandler(handler)
        ours.setLevel(level)


def _messages(text):
    """The messages of the timestamped lines in ``text``."""
    lines = text.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), f"lines without the timestamp format: {lines}"
    return [m.group(2) for m in matches]


def test_log_prints_a_timestamped_line_by_default(capsys):
    before = datetime.datetime.now().replace(microsecond=0)
    with unconfigured_logging():
        theanets.log("x {}", 1)
        theanets.log("{a} and {b}", a="named", b=2)
    after = datetime.datetime.now()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert _messages(out) == ["x 1", "named and 2"]
    stamp = datetime.datetime.strptime(LINE.match(lines[0]).group(1), "%Y%m%d %H%M%S")
    assert before <= stamp <= after


def test_warnings_name_their_level(capsys):
    with unconfigured_logging():
        theanets.util.log("careful {}", "now", level=logging.WARNING)
    assert _messages(capsys.readouterr().out) == ["WARNING: careful now"]


def _train_and_capture(capsys, regression_data):
    x, y = regression_data
    net = theanets.Regressor([4, (5, "tanh"), 3])
    pairs = list(
        net.itertrain(
            [x, y],
            algo="sgd",
            learning_rate=0.01,
            batch_size=len(x),
            validate_every=2,
            max_updates=3,
            monitors={"hid1:out": 0.5},
        )
    )
    return pairs, _messages(capsys.readouterr().out)


def _fields(monitors):
    return " ".join(f"{k}={v:.6f}" for k, v in monitors.items())


def test_training_prints_one_line_per_epoch_and_marks_validations(capsys, regression_data):
    with unconfigured_logging():
        pairs, messages = _train_and_capture(capsys, regression_data)
    assert len(pairs) == 3
    epochs = [m for m in messages if m.startswith("SGD ")]
    assert epochs == [f"SGD {i + 1} {_fields(train)}" for i, (train, _) in enumerate(pairs)]
    assert all("hid1:out<0.5=" in line and "err=" in line for line in epochs)
    validations = [m for m in messages if m.startswith("validation ")]
    # before epochs 1 and 3, plus the final one after max_updates
    assert [v.split()[1] for v in validations] == ["0", "1", "2"]
    assert validations[0] == f"validation 0 {_fields(pairs[0][1])} *"
    assert validations[-1].startswith(f"validation 2 {_fields(pairs[-1][1])}")
    # no other line repeats the monitors
    assert [m for m in messages if "loss=" in m] == [
        m for m in messages if m.startswith(("SGD ", "validation "))
    ]


def test_setting_the_level_silences_the_console(capsys, regression_data):
    with unconfigured_logging():
        logging.getLogger("theanets").setLevel(logging.WARNING)
        theanets.log("hidden {}", 1)
        pairs, messages = _train_and_capture(capsys, regression_data)
        theanets.util.log("still shown", level=logging.WARNING)
    assert len(pairs) == 3 and messages == []
    assert _messages(capsys.readouterr().out) == ["WARNING: still shown"]


def test_logging_disable_is_honoured(capsys):
    with unconfigured_logging():
        logging.disable(logging.INFO)
        try:
            theanets.log("hidden")
        finally:
            logging.disable(logging.NOTSET)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("root_level", [logging.WARNING, logging.INFO])
def test_configured_logging_takes_over(capsys, root_level):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    with unconfigured_logging():
        # what logging.basicConfig(level=root_level) sets up
        root.addHandler(handler)
        saved = root.level
        root.setLevel(root_level)
        try:
            theanets.log("info {}", 1)
            theanets.util.log("warn {}", 2, level=logging.WARNING)
        finally:
            root.removeHandler(handler)
            root.setLevel(saved)
    assert capsys.readouterr().out == ""
    expected = ["WARNING theanets warn 2"]
    if root_level == logging.INFO:
        expected.insert(0, "INFO theanets info 1")
    assert stream.getvalue().splitlines() == expected


def test_a_handler_on_the_theanets_logger_takes_over(capsys):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    ours = logging.getLogger("theanets")
    with unconfigured_logging():
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        try:
            theanets.log("redirected")
        finally:
            ours.removeHandler(handler)
    assert capsys.readouterr().out == ""
    assert stream.getvalue() == "redirected\n"


def test_test_runs_are_not_flooded(capsys, caplog):
    # pytest's log capture is configured logging: nothing reaches stdout, and
    # informational records are not even made unless asked for
    theanets.log("quiet")
    assert capsys.readouterr().out == ""
    assert "quiet" not in caplog.text
    with caplog.at_level(logging.INFO, logger="theanets"):
        theanets.log("captured {}", 3)
    assert "captured 3" in caplog.text
    assert capsys.readouterr().out == ""
