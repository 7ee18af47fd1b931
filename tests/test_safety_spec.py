"""Hostile or careless specs (#16): alias bombs, versions that escape out/, data outside the spec folder, spec code
that runs only when allowed, catastrophic regexes that cannot hang a build; CLI errors for OSError and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.checks import check_response
from curate.checks.code import disallow_code
from curate.cli import main
from curate.errors import CheckError, SpecError
from curate.spec import allow_outside_data, lint, load_spec
from curate.steps.pipeline import build

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "build"


@pytest.fixture(autouse=True)
def _clean_opt_ins(monkeypatch):
    monkeypatch.delenv("CURATE_ALLOW_CODE", raising=False)
    monkeypatch.delenv("CURATE_ALLOW_OUTSIDE_DATA", raising=False)
    disallow_code()
    allow_outside_data(False)
    yield
    disallow_code()
    allow_outside_data(False)
    from curate.checks import code

    code.announce = None


def _spec_dir(tmp_path: Path, extra: str = "", rules: str = "", name: str = "s") -> Path:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(DATA / "data.jsonl", d / "data.jsonl")
    text = (DATA / "spec.yaml").read_text()
    if rules:
        text = text.replace("rules:\n", "rules:\n" + rules, 1)
    (d / "spec.yaml").write_text(text + extra)
    return d


BOMB = """name: bomb
version: 1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
rules: [*i]
"""


def test_a_yaml_alias_bomb_is_refused_with_a_line(tmp_path):
    f = tmp_path / "spec.yaml"
    f.write_text(BOMB)
    t0 = time.perf_counter()
    with pytest.raises(
        SpecError,
        match=r"spec.yaml:\d+:1: YAML aliases expand this spec to more than 200,000 "
        r"values \(anchor &\w\)",
    ):
        load_spec(f)
    assert time.perf_counter() - t0 < 30  # (it used to run until a MemoryError)
    r = CliRunner().invoke(main, ["spec", "check", str(f)])
    assert r.exit_code == 1 and "alias" in r.stderr and "Traceback" not in r.output


def test_deep_yaml_and_too_many_aliases(tmp_path):
    f = tmp_path / "spec.yaml"
    f.write_text("name: x\nversion: 1\nrules: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(SpecError, match="nested deeper than 64 levels|nested too deep"):
        load_spec(f)
    f.write_text("name: x\nversion: 1\nk: &k [1]\nrules: [" + ", ".join(["*k"] * 2500) + "]\n")
    with pytest.raises(SpecError, match="more than 2000 YAML alias uses"):
        load_spec(f)


@pytest.mark.parametrize(
    "version,ok",
    [
        ("../../x", False),
        ("v1/../../etc", False),
        (".hidden", False),
        ("a b", False),
        (-1, False),
        (True, False),
        ("2.1-rc+b", True),
        (3, True),
    ],
)
def test_version_cannot_leave_the_output_folder(tmp_path, version, ok):
    d = _spec_dir(tmp_path)
    text = (d / "spec.yaml").read_text().replace("version: 1", f"version: {json.dumps(version)}")
    (d / "spec.yaml").write_text(text)
    if ok:
        assert load_spec(d).default_out_dir() == Path("out") / "mini-build" / f"v{version}"
    else:
        with pytest.raises(SpecError, match=r"spec.yaml:3:\d+: version"):
            load_spec(d)


def test_data_outside_the_spec_folder_warns_and_needs_a_flag(tmp_path):
    d = _spec_dir(tmp_path)
    shutil.copy(DATA / "data.jsonl", tmp_path / "elsewhere.jsonl")
    text = (d / "spec.yaml").read_text().replace("data: [data.jsonl]", "data: [../elsewhere.jsonl]")
    (d / "spec.yaml").write_text(text)
    spec = load_spec(d)
    assert [f.code for f in lint(spec) if f.code == "data_outside_spec"] == ["data_outside_spec"]
    with pytest.raises(SpecError, match="outside the spec folder .* --allow-outside-data"):
        build(spec, out=tmp_path / "o")
    r = CliRunner().invoke(main, ["build", str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--allow-outside-data" in r.stderr
    r = CliRunner().invoke(main, ["build", str(d), "--out", str(tmp_path / "o"), "--allow-outside-data"])
    assert r.exit_code == 0, r.output
    (d / "spec.yaml").write_text(text.replace("../elsewhere.jsonl", str(tmp_path / "elsewhere.jsonl")))
    assert load_spec(d).data_outside()  # absolute paths too
    (d / "spec.yaml").write_text(text.replace("../elsewhere.jsonl", "data.jsonl"))
    assert load_spec(d).data_outside() == []


CODE_RULE = """  - id: from-code
    says: Checked by the spec's own code.
    check: {kind: python, function: "mychecks:ok"}
    category: instruction
"""
CODE = """from pathlib import Path
Path(__file__).with_name("RAN").write_text("imported")
def ok(text, ctx):
    return True
"""


def test_spec_code_runs_only_when_allowed_and_never_from_spec_check(tmp_path):
    d = _spec_dir(tmp_path, rules=CODE_RULE)
    (d / "mychecks.py").write_text(CODE)
    spec = load_spec(d)
    with pytest.raises(CheckError, match="rule 'from-code' runs Python code .*mychecks.py.*--allow-code"):
        build(spec, out=tmp_path / "o")
    with pytest.raises(CheckError, match="--allow-code"):
        check_response(spec, '{"answer": "x"}')
    assert not (d / "RAN").exists()
    runner = CliRunner()
    r = runner.invoke(main, ["build", str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "runs Python code" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for args in (
        ["spec", "check", str(d)],
        ["spec", "check", str(d), "--allow-code"],
        ["--allow-code", "spec", "check", str(d)],
    ):
        r = runner.invoke(main, args)
        assert (
            r.exit_code == 0 and "runs_code" in r.output + r.stderr and "mychecks:ok" in r.output + r.stderr
        )
        assert not (d / "RAN").exists()
    r = runner.invoke(main, ["build", str(d), "--out", str(tmp_path / "o"), "--allow-code"])
    assert r.exit_code == 0, r.output
    assert "running spec code: rule 'from-code' -> mychecks:ok from " in r.stderr
    assert (d / "RAN").read_text() == "imported"


def test_env_opt_in_and_an_installed_module_is_gated_too(tmp_path, monkeypatch):
    rule = CODE_RULE.replace("mychecks:ok", "operator:is_not")  # is_not(text, ctx): True
    spec = load_spec(_spec_dir(tmp_path, rules=rule))
    with pytest.raises(CheckError, match="installed module 'operator'"):
        check_response(spec, '{"answer": "x"}')
    monkeypatch.setenv("CURATE_ALLOW_CODE", "1")
    assert {r.rule: r.status for r in check_response(spec, '{"answer": "x"}')}["from-code"] == "pass"


SLOW_RULE = """  - id: no-stutter
    says: No runaway repeats.
    check: {kind: regex_absent, field: /answer, pattern: "(a|aa)+$"}
    category: format
"""


def test_a_catastrophic_regex_cannot_hang_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_REGEX_TIMEOUT", "0.2")
    d = _spec_dir(tmp_path, rules=SLOW_RULE)
    bad = {
        "messages": [
            {"role": "user", "content": "Say a lot of a's?"},
            {"role": "assistant", "content": json.dumps({"answer": "a" * 64 + "!"})},
        ]
    }
    with open(d / "data.jsonl", "a") as fh:
        fh.write(json.dumps(bad) + "\n")
    spec = load_spec(d)
    assert [f.code for f in lint(spec) if f.code == "slow_regex"] == ["slow_regex"]
    t0 = time.perf_counter()
    res = build(spec, out=tmp_path / "o")  # with re this search takes longer than the universe has left
    assert time.perf_counter() - t0 < 120
    rows = [
        json.loads(x) for x in (tmp_path / "o" / "quarantine" / "validate.jsonl").read_text().splitlines()
    ]
    slow = [r for r in rows if "gave up after 0.2 s" in r["detail"]]
    assert len(slow) == 1 and slow[0]["reason"] == "rule_failed"
    assert res.manifest["conservation"]["ok"]


def test_os_errors_name_the_path_and_the_cause(tmp_path):
    out = tmp_path / ("x" * 300) / "v1"
    r = CliRunner().invoke(main, ["build", str(DATA), "--out", str(out)])
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert line.startswith(f"error: {tmp_path / ('x' * 300)}") and "\n" not in line
    assert line.endswith(": file name too long (ENAMETOOLONG)") and "unexpected" not in line


INTERRUPT = r"""
import json, random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for i in range(30000):
        f.write(json.dumps({"messages": [{"role": "user", "content": f"question {i} about order {random.random()}"},
                                         {"role": "assistant", "content": json.dumps({"answer": f"ok {i}"})}]}) + "\n")
"""


def test_ctrl_c_exits_130_with_one_line_and_no_worker_tracebacks(tmp_path):
    big = tmp_path / "big.jsonl"
    subprocess.run([sys.executable, "-c", INTERRUPT, str(big)], check=True)
    env = {**os.environ, "CURATE_WORKERS": "2", "PYTHONPATH": str(REPO)}
    interrupted = 0
    for delay in (2.5, 5.0):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "curate",
                "build",
                str(DATA),
                "--input",
                str(big),
                "--out",
                str(tmp_path / "o"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # finished before the signal (a fast machine)
        lines = [
            x for x in err.decode().splitlines() if x.strip() and not x.startswith("curate build: still")
        ]
        assert proc.returncode == 130 and lines == ["error: interrupted"], err.decode()
        interrupted += 1
    assert interrupted


def test_the_dataset_card_escapes_spec_text(tmp_path):
    d = _spec_dir(tmp_path)
    hostile = (
        '"Hi <script>alert(1)</script> [click](http://evil.example) ![img](x.png) **bold** &amp;\\n---\\n'
        '# Not a heading\\n| a | b |"'
    )
    text = (d / "spec.yaml").read_text()
    text = text.replace(
        "description: Test spec for curate build (validate, pair, split, export).", f"description: {hostile}"
    )
    text = text.replace("says: Polite.", 'says: "Polite <b>always</b> [x](y)"')
    (d / "spec.yaml").write_text(text)
    build(load_spec(d), out=tmp_path / "o")
    card = (tmp_path / "o" / "README.md").read_text()
    body = card.split("\n---\n", 2)[-1] if card.startswith("---") else card
    assert "<script>" not in card and "<b>" not in card and "](http://evil.example)" not in card
    assert (
        "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in card and "\\[click\\]\\(http://evil.example\\)" in card
    )
    assert "&amp;amp;" in card and "\n# Not a heading" not in body and "\n\\# Not a heading" in body
    assert (
        "\n---\n" not in body.split("## Counts")[0]
    )  # the description cannot end the YAML header or add a rule
    assert "Polite &lt;b&gt;always&lt;/b&gt; \\[x\\]\\(y\\)" in card
