"""The command line: ``minikd check`` and ``minikd bench kd-loss`` on small sizes."""

import json
import subprocess
import sys

from minikd.tools import cli


def test_check_reports_every_op_and_passes(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    for name in ("matmul (batched)", "getitem (gather)", "kl_div reverse", "jsd", "distillation_loss jsd additive"):
        assert name in out
    assert "FAILED" not in out and "all gradients agree" in out


def test_bench_kd_loss_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "kd-loss", "--N", "256", "--V", "4000", "--repeat", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["N"] == 256 and result["V"] == 4000 and result["minikd"]["median_s"] > 0
    assert 0 < result["minikd"]["peak_extra_logit_buffers"] < 3
    if result["torch"] is not None:  # PyTorch is optional: when present, values and gradients must agree
        assert result["torch"]["agrees"]
    assert "kd-loss" in capsys.readouterr().out


def test_python_dash_m_and_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "minikd", "bench", "nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr
