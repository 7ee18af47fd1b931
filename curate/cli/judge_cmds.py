"""`curate judge run | calibrate | status` and `curate spec diff`: the spec as a versioned contract."""

from __future__ import annotations

import click

from curate.cli.common import (
    deprecated_options,
    emit_json,
    handle_errors,
    json_option,
    make_progress,
    quiet_option,
    say,
    show_progress,
)

_judge_opts = [
    click.option(
        "--model",
        default=None,
        help="Local judge: an HF model folder or a .gguf file (default: the spec's judge.model).",
    ),
    click.option("--gguf-file", default=None, help="The .gguf file inside --model when it is a folder."),
    click.option(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
        "(key from the env variable judge.api_key_env, never a flag).",
    ),
    click.option("--judge-model", "endpoint_model", default=None, help="Model name sent to the endpoint."),
    click.option(
        "--cache",
        "cache_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Verdict cache (SQLite); default .curate/judge/NAME/cache.sqlite.",
    ),
]


def judge_options(fn):  # type: ignore[no-untyped-def]
    for opt in reversed(_judge_opts):
        fn = opt(fn)
    return fn


def _judge(spec, model, gguf_file, base_url, endpoint_model):  # type: ignore[no-untyped-def]
    from curate.judge.core import make_judge

    return make_judge(
        spec, model=model, gguf_file=gguf_file, base_url=base_url, endpoint_model=endpoint_model
    )


def _rules(spec, rule_ids):  # type: ignore[no-untyped-def]
    from curate.errors import SpecError

    rules = spec.judge_rules()
    if not rules:
        raise SpecError(f"{spec.ref} has no judge rule (a rule with check: {{kind: judge, rubric: ...}})")
    if rule_ids:
        unknown = sorted(set(rule_ids) - {r.id for r in rules})
        if unknown:
            raise SpecError(
                f"{', '.join(unknown)}: not a judge rule of {spec.ref} (judge rules: "
                f"{', '.join(r.id for r in rules)})"
            )
        rules = [r for r in rules if r.id in rule_ids]
    return rules


def register(main: click.Group) -> None:
    @main.group("judge")
    def judge() -> None:
        """Judge rules: a model grades responses against a rubric; calibrated against people before it counts.

        \b
        Example:
          curate judge calibrate specs/support-triage --labels pulled.jsonl
          curate judge status specs/support-triage
        """

    @judge.command("run")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.argument("responses", type=click.Path(exists=True, dir_okay=False))
    @click.option("--rule", "rule_ids", multiple=True, help="Only these judge rules (repeatable).")
    @judge_options
    @json_option
    @quiet_option
    @handle_errors
    def run_cmd(
        spec_path: str,
        responses: str,
        rule_ids: tuple[str, ...],
        model: str | None,
        gguf_file: str | None,
        base_url: str | None,
        endpoint_model: str | None,
        cache_path: str | None,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Judge every response of a JSONL file (our records, or {"prompt", "response"} rows).

        Each verdict says whether it counts (the rule's calibration passes the gate: "automatic") or is a
        suggestion for labelers.

        \b
        Example:
          curate judge run specs/support-triage outputs.jsonl --model smollm2.gguf --json
        """
        from curate.judge.calibrate import gate_status
        from curate.judge.core import JudgeCache, default_cache_path, run_judge
        from curate.judge.items import response_items
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        rules = _rules(spec, rule_ids)
        items = response_items(responses)
        judge_ = _judge(spec, model, gguf_file, base_url, endpoint_model)
        gate = gate_status(spec, judge_id=judge_.id)
        bar, update = make_progress(show_progress(quiet, as_json))
        with bar, JudgeCache(cache_path or default_cache_path(spec)) as cache:
            verdicts = run_judge(
                spec,
                judge_,
                [(it["user"], it["response"]) for it in items],
                rules=rules,
                cache=cache,
                progress=update,
            )
        rows = [
            {
                "where": it["where"],
                "verdicts": [{**v.as_dict(), "counts": gate[v.rule]["automatic"]} for v in vs],
            }
            for it, vs in zip(items, verdicts, strict=True)
        ]
        if as_json:
            emit_json({"spec": spec.ref, "judge": judge_.id, "gate": gate_summary(gate), "items": rows})
            return
        for row in rows:
            for v in row["verdicts"]:
                click.echo(
                    f"{row['where']}\t{v['rule']}\t{v['status']}\t"
                    f"{'automatic' if v['counts'] else 'suggestion'}\t{v['reason']}"
                )
        say(f"{len(rows)} responses judged by {judge_.id}", quiet=quiet)

    @deprecated_options({"--out": "--out-file"})
    @judge.command("eval")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.argument("report", type=click.Path(exists=True, dir_okay=False))
    @judge_options
    @json_option
    @quiet_option
    @handle_errors
    def eval_cmd(
        spec_path: str,
        report: str,
        model: str | None,
        gguf_file: str | None,
        base_url: str | None,
        endpoint_model: str | None,
        cache_path: str | None,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Add the judge rules' results to an eval report (`curate eval --json-out`), each rule marked
        automatic (its calibration passes the gate) or suggestion; the code checks' figures are not changed.

        \b
        Example:
          curate eval specs/support-triage --model runs/sft --json-out evals/after.json
          curate judge eval specs/support-triage evals/after.json
        """
        from curate.judge.core import JudgeCache, default_cache_path
        from curate.judge.evals import judge_eval_report
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        _rules(spec, ())
        judge_ = _judge(spec, model, gguf_file, base_url, endpoint_model)
        with JudgeCache(cache_path or default_cache_path(spec)) as cache:
            rep = judge_eval_report(spec, report, judge_, cache=cache)
        if as_json:
            emit_json({"spec": spec.ref, "report": report, **rep["judge"]})
            return
        for r in rep["judge"]["rules"]:
            rate = "-" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}"
            click.echo(
                f"{r['rule']}\t{r['status']}\tpass {r['pass']}\tfail {r['fail']}\tskip {r['skip']}\t{rate}"
            )
        say(f"judge results written into {report}", quiet=quiet)

    @judge.command("calibrate")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--labels",
        "labels",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Pulled records (curate label pull) holding the human per-rule labels. Repeatable.",
    )
    @click.option("--rule", "rule_ids", multiple=True, help="Only these judge rules (repeatable).")
    @click.option(
        "--include-unreviewed",
        is_flag=True,
        help="Also take records no person reviewed (their `violates` marks) as labels.",
    )
    @click.option(
        "--out-file",
        "out",
        type=click.Path(dir_okay=False),
        default=None,
        help="Calibration file; default .curate/judge/NAME/calibration.json (merged per rule).",
    )
    @judge_options
    @json_option
    @quiet_option
    @handle_errors
    def calibrate_cmd(
        spec_path: str,
        labels: tuple[str, ...],
        rule_ids: tuple[str, ...],
        include_unreviewed: bool,
        out: str | None,
        model: str | None,
        gguf_file: str | None,
        base_url: str | None,
        endpoint_model: str | None,
        cache_path: str | None,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Compare each judge rule with the human labels: n, agreement, Cohen's kappa (bootstrap 95%
        interval),
        confusion matrix and the disagreeing examples. A rule counts as automatic only when n >= judge.min_n
        (30) and kappa's lower bound >= judge.gate (0.6); exit 0 either way (the gate is in the output).

        \b
        Example:
          curate judge calibrate specs/support-triage --labels pulled.jsonl --json
        """
        from curate.judge.calibrate import (
            calibrate_rule,
            default_calibration_path,
            human_items,
            save_calibration,
        )
        from curate.judge.core import JudgeCache, default_cache_path
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        rules = _rules(spec, rule_ids)
        judge_ = _judge(spec, model, gguf_file, base_url, endpoint_model)
        results = []
        with JudgeCache(cache_path or default_cache_path(spec)) as cache:
            for rule in rules:
                items = human_items(labels, rule, reviewed_only=not include_unreviewed)
                results.append(calibrate_rule(spec, rule, judge_, items, cache=cache))
        path = out or default_calibration_path(spec)
        save_calibration(path, results)
        if as_json:
            emit_json({"spec": spec.ref, "judge": judge_.id, "file": str(path), "rules": results})
            return
        for r in results:
            ci = r["kappa_ci95"]
            click.echo(
                f"{r['rule']}\tn={r['n']}\tagreement={r['agreement']}\tkappa={r['kappa']}\t"
                f"ci95={ci}\t{r['status']}" + (f" ({r['why_not']})" if r["why_not"] else "")
            )
            c = r["confusion"]
            click.echo(
                f"  human pass: judge pass {c['human_pass_judge_pass']}, fail {c['human_pass_judge_fail']}; "
                f"human fail: judge pass {c['human_fail_judge_pass']}, fail {c['human_fail_judge_fail']}; "
                f"no verdict {c['no_verdict']}"
            )
            for d in r["disagreements"][:5]:
                click.echo(f"  {d['where']}: human {d['human']}, judge {d['judge']} ({d['reason']})")
        say(f"calibration written to {path}", quiet=quiet)

    @judge.command("status")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--calibration",
        type=click.Path(dir_okay=False),
        default=None,
        help="Calibration file; default .curate/judge/NAME/calibration.json.",
    )
    @json_option
    @quiet_option
    @handle_errors
    def status_cmd(spec_path: str, calibration: str | None, as_json: bool, quiet: bool) -> None:
        """Show each judge rule's calibration and whether it counts as automatic now.

        \b
        Example:
          curate judge status specs/support-triage
        """
        from curate.judge.calibrate import gate_status
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        gate = gate_status(spec, calibration)
        if as_json:
            emit_json({"spec": spec.ref, "rules": gate})
            return
        for rid, st in gate.items():
            cal = st["calibration"] or {}
            click.echo(
                f"{rid}\t{'automatic' if st['automatic'] else 'suggestion'}\tn={cal.get('n')}\t"
                f"kappa={cal.get('kappa')}\tci95={cal.get('kappa_ci95')}"
                + (f"\t{st['why']}" if st["why"] else "")
            )
        if not gate:
            say(f"{spec.ref} has no judge rule", quiet=quiet)

    _register_spec_diff(main)


def gate_summary(gate: dict[str, dict[str, object]]) -> dict[str, str]:
    return {rid: "automatic" if st["automatic"] else f"suggestion ({st['why']})" for rid, st in gate.items()}


def _register_spec_diff(main: click.Group) -> None:
    """`curate spec diff` joins the `spec` group (defined in curate/cli/spec_cmds.py)."""
    group = main.commands.get("spec")
    if not isinstance(group, click.Group):  # pragma: no cover - spec_cmds registers first
        return

    @deprecated_options({"--out-dir": "--build-dir"})
    @group.command("diff")
    @click.argument("old")
    @click.argument("new")
    @click.option(
        "--build-dir",
        "out_dir",
        type=click.Path(file_okay=False, exists=True),
        default=None,
        help="A build folder made under OLD: re-check its exports, pairs, eval results and coverage.",
    )
    @click.option(
        "--labels",
        "labels",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Labeled records (curate label pull) to find stale labels in. Repeatable.",
    )
    @json_option
    @quiet_option
    @handle_errors
    def diff_cmd(
        old: str, new: str, out_dir: str | None, labels: tuple[str, ...], as_json: bool, quiet: bool
    ) -> None:
        """What changed from spec OLD to NEW, rule by rule, and its impact on what exists.

        OLD and NEW are spec files or folders, git revisions of the spec file (REV:path) or NAME@VERSION.
        Impact: labels whose rule changed (stale), exported records that now fail or newly pass the checks,
        pairs whose proof no longer holds, eval results that no longer measure the spec, coverage cells that
        move.

        \b
        Example:
          curate spec diff HEAD~1:specs/support-triage/spec.yaml specs/support-triage \\
              --build-dir out/support-triage/v1 --labels .curate/labeling/support-triage/v1/pulled.jsonl
        """
        from curate.spec_diff import diff_specs, impact, load_spec_ref, render

        a, b = load_spec_ref(old), load_spec_ref(new)
        d = diff_specs(a, b)
        imp = impact(a, b, out_dir=out_dir, labels=labels, diff=d) if (out_dir or labels) else None
        if as_json:
            emit_json({**d.as_dict(), "impact": imp})
            return
        for line in render(d, imp):
            click.echo(line)
