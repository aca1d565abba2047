"""Run every benchmark script and write ``RESULTS.md`` and ``results.json``.

``make bench`` calls this; ``python benchmarks/run_all.py bench_mlp.py``
reruns one script and keeps the other scripts' recorded results. Each
``bench_*.py`` script runs in its own process (so one crash does not hide the
others); scripts record their figures in ``results.json`` and print a
summary, which is copied into ``RESULTS.md``.
"""

import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = [
    "bench_mlp.py",
    "bench_regularizers.py",
    "bench_recurrent.py",
    "bench_convolution.py",
    "bench_jax.py",
    "bench_compile.py",
]


def flatten(prefix, value, rows):
    """Turn nested result dictionaries into (key, value) rows."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else key, inner, rows)
    else:
        rows.append((prefix, value))


def main(argv=None):
    """Run the scripts named in ``argv`` (default: all, starting from empty results)."""
    argv = sys.argv[1:] if argv is None else argv
    results_path = os.path.join(HERE, "results.json")
    if not argv and os.path.exists(results_path):
        os.unlink(results_path)
    outputs = {}
    for script in argv or SCRIPTS:
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            continue
        print(f"== {script}", flush=True)
        start = time.time()
        proc = subprocess.run(
            [sys.executable, path], cwd=HERE, capture_output=True, text=True, check=False
        )
        elapsed = time.time() - start
        print(proc.stdout[-4000:])
        if proc.returncode:
            print(proc.stderr[-4000:], file=sys.stderr)
        outputs[script] = (proc.returncode, elapsed, proc.stdout.strip())

    data = {}
    if os.path.exists(results_path):
        with open(results_path) as handle:
            data = json.load(handle)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.date.today().isoformat()}.",
        "",
        f"Machine: {data.get('machine', 'unknown')}",
        "",
        "Ratios are ours divided by the other contender (lower is better); every",
        "contender runs in the same process with interleaved repetitions and the",
        "median is reported.",
        "",
    ]
    for section, values in data.items():
        if section == "machine":
            continue
        lines += [f"## {section}", "", "| measure | value |", "|---|---|"]
        rows = []
        flatten("", values, rows)
        lines += [f"| {key} | {value} |" for key, value in rows]
        lines.append("")
    for script, (code, elapsed, stdout) in outputs.items():
        status = "ok" if code == 0 else f"failed (exit {code})"
        lines += [
            f"### `{script}`: {status}, {elapsed:.0f} s",
            "",
            "```",
            stdout[-3000:],
            "```",
            "",
        ]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as handle:
        handle.write("\n".join(lines))
    print("wrote benchmarks/RESULTS.md")
    return 0 if all(code == 0 for code, _, _ in outputs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
