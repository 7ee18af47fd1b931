"""The importers: every format on real files, every malformed-line rule, and the accounting (nothing lost)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from curate.errors import InputError
from curate.records import PreferenceRecord, SFTRecord, dump_record, parse_record
from curate.steps.base import RunContext
from curate.steps.read import FORMATS, detect_format, expand_inputs, read_inputs

DATA = Path(__file__).resolve().parents[1] / "data" / "read"


def read(paths, **kw):
    ctx = RunContext()
    recs = list(read_inputs([str(p) for p in (paths if isinstance(paths, list) else [paths])], ctx=ctx, **kw))
    return recs, ctx


def rows(ctx: RunContext) -> list[dict]:
    return ctx.quarantined.get("read", [])


def assert_conserved(recs, ctx: RunContext) -> None:
    """Sum over files of units read == records yielded + rows quarantined, and per file too."""
    ins = {k[3:]: v for k, v in ctx.counters.items() if k.startswith("in:")}
    assert sum(ins.values()) == len(recs) + len(rows(ctx))
    per_file_out = Counter(r.source.file for r in recs)
    for f, n in ins.items():
        assert n == per_file_out[f] + ctx.per_file_quarantined.get(f, 0), f
        assert ctx.counters["read:out:" + f] == per_file_out[f]


# ---------------------------------------------------------------- malformed lines


def test_malformed_jsonl_every_bad_line_quarantined_with_its_line_and_reason():
    recs, ctx = read(DATA / "malformed.jsonl")
    assert [r.source.line for r in recs] == [1, 13]
    got = [(q["source"]["line"], q["reason"]) for q in rows(ctx)]
    assert got == [
        (2, "bad_json"),
        (3, "python_literal"),
        (4, "broken_line"),
        (6, "not_an_object"),
        (8, "bad_role"),
        (9, "bad_encoding"),
        (10, "empty_turn"),
        (11, "bad_tool_call"),
        (12, "unknown_shape"),
    ]
    for q in rows(ctx):
        assert q["step"] == "read"
        assert q["detail"].startswith(f"{DATA / 'malformed.jsonl'}:{q['source']['line']}: ")
        assert q["original"]  # the raw text is kept
    broken = next(q for q in rows(ctx) if q["reason"] == "broken_line")
    assert "lines 4-5" in broken["detail"] and "first half\nsecond half" in broken["original"]
    assert "messages[0].role" in next(q for q in rows(ctx) if q["reason"] == "bad_role")["detail"]
    assert "tool_calls[0].arguments" in next(q for q in rows(ctx) if q["reason"] == "bad_tool_call")["detail"]
    # the blank line 7 is not a unit; the broken line (4-5) is one unit
    assert ctx.counters[f"in:{DATA / 'malformed.jsonl'}"] == 11
    assert_conserved(recs, ctx)
    assert recs[1].messages[0].content == "Café crème, s'il vous plaît."


def test_broken_json_array_keeps_the_elements_before_the_error():
    recs, ctx = read(DATA / "broken_array.json")
    assert [r.messages[0].content for r in recs] == ["One", "Two"]
    assert [r.source.line for r in recs] == [2, 3]
    (q,) = rows(ctx)
    assert q["reason"] == "bad_json" and q["source"]["line"] == 4 and "Three" in q["original"]
    assert_conserved(recs, ctx)


def test_bad_utf8_json_file_is_one_quarantined_unit(tmp_path):
    f = tmp_path / "latin1.json"
    f.write_bytes(b'[{"instruction": "caf\xe9", "output": "x"}]')
    recs, ctx = read(f, format="alpaca")
    assert recs == [] and [q["reason"] for q in rows(ctx)] == ["bad_encoding"]
    assert_conserved(recs, ctx)


def test_a_line_that_does_not_fit_a_forced_format_is_quarantined_not_skipped(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(
        '{"instruction": "Hi", "output": "Hello"}\n{"instruction": "No output"}\n{"text": "plain"}\n'
    )
    recs, ctx = read(f, format="alpaca")
    assert len(recs) == 1
    assert [q["reason"] for q in rows(ctx)] == ["missing_field", "missing_field"]
    assert "output" in rows(ctx)[0]["detail"]
    assert_conserved(recs, ctx)


# ---------------------------------------------------------------- formats on our golden files


def test_openai_tool_calls_roles_and_tools_preserved():
    recs, ctx = read(DATA / "openai_tools.jsonl")
    assert not rows(ctx)
    a, b = recs
    assert [m.role for m in a.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]  # developer->system
    call = a.messages[2].tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert a.messages[3].tool_call_id == "call_1"
    assert json.loads(a.tools)[0]["function"]["name"] == "get_weather"
    # arguments given as an object become a JSON string; content parts are joined
    assert json.loads(b.messages[1].tool_calls[0].function.arguments) == {"city": "Rome"}
    assert b.messages[3].content == "24 °C in Rome."
    assert (b.category, b.tags) == ("edge", ("tools",))
    assert a.source.format == "openai" and a.id == a.content_id()


def test_hh_rlhf_transcripts_become_a_shared_prompt_and_two_answers():
    recs, ctx = read(DATA / "hh_rlhf.jsonl")
    assert all(isinstance(r, PreferenceRecord) for r in recs)
    multi = recs[0]
    assert [(m.role, m.content) for m in multi.prompt] == [
        ("user", "What's a good name for a cat?"),
        ("assistant", "How about Miso?"),
        ("user", "Something longer?"),
    ]
    assert multi.chosen[0].content == "Bartholomew Whiskers." and multi.rejected[0].content == "Cat."
    assert recs[1].chosen[0].role == "assistant"
    (q,) = rows(ctx)
    assert (q["source"]["line"], q["reason"]) == (3, "prompt_mismatch")
    assert_conserved(recs, ctx)


def test_preference_strings_message_lists_and_implicit_prompt():
    recs, ctx = read(DATA / "preference.jsonl")
    s, m, implicit = recs
    assert [x.content for x in s.prompt] == ["Capital of France?"] and s.chosen[0].content == "Paris."
    assert [x.role for x in m.prompt] == ["system", "user"] and m.rejected[0].content == "5"
    assert [x.content for x in implicit.prompt] == ["Hi"] and implicit.rejected[0].content == "What."
    assert [(q["source"]["line"], q["reason"]) for q in rows(ctx)] == [
        (4, "prompt_mismatch"),
        (5, "missing_rejected"),
    ]


def test_csv_with_field_mapping():
    mapping = {"instruction": "question", "input": "context", "output": "answer"}
    recs, ctx = read(DATA / "alpaca.csv", mapping=mapping)
    assert [r.messages[0].content for r in recs] == [
        "Summarize the ticket.\n\nMy order #88 never arrived.",
        "Say hi",
    ]
    assert recs[1].messages[1].content == "Hi!\nHow can I help?"  # a quoted cell over two lines is one row
    assert [(q["source"]["line"], q["reason"]) for q in rows(ctx)] == [(5, "bad_csv_row"), (6, "empty_turn")]
    assert_conserved(recs, ctx)
    with pytest.raises(InputError, match="cannot tell the format"):
        read(DATA / "alpaca.csv", strict=True)  # without the mapping the columns mean nothing to us
    recs, ctx = read(DATA / "alpaca.csv")  # not strict: the file's rows are quarantined, nothing is lost
    assert recs == [] and {q["reason"] for q in rows(ctx)} == {"unknown_format", "bad_csv_row"}
    first = rows(ctx)[0]
    assert "fields found: question, context, answer" in first["detail"]
    assert "--map prompt=question --map completion=answer" in first["detail"]
    assert_conserved(recs, ctx)


def test_parquet_streams_by_row_and_keeps_message_lists(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 2500
    table = pa.Table.from_pylist(
        [
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}" if i != 7 else ""},
                ]
            }
            for i in range(n)
        ]
    )
    pq.write_table(table, tmp_path / "chat.parquet", row_group_size=1000)
    recs, ctx = read(tmp_path / "chat.parquet")
    assert len(recs) == n - 1 and recs[0].messages[1].content == "a0"
    assert [(q["source"]["line"], q["reason"]) for q in rows(ctx)] == [(8, "empty_turn")]
    assert recs[-1].source.line == n
    assert_conserved(recs, ctx)


def test_hugging_face_dataset_folder(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(
                [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]
            ),
            "test": datasets.Dataset.from_list([{"prompt": "p9", "chosen": "good 9", "rejected": "bad 9"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "ds"))
    files = expand_inputs([tmp_path / "ds"])
    assert {f.suffix for f in files} == {".arrow"} and len(files) == 2  # metadata json files are not inputs
    recs, ctx = read(tmp_path / "ds")
    assert sorted(r.chosen[0].content for r in recs) == sorted([f"good {i}" for i in range(5)] + ["good 9"])
    assert all(r.source.format == "preference" for r in recs)
    assert_conserved(recs, ctx)
    assert detect_format(tmp_path / "ds") == "preference"


def test_native_round_trip_through_curate_import(tmp_path):
    out = tmp_path / "native.jsonl"
    res = CliRunner().invoke(
        _main(), ["import", str(DATA / "openai_tools.jsonl"), "--out-file", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    first, _ = read(DATA / "openai_tools.jsonl")
    again, _ = read(out)
    assert {r.source.format for r in again} == {"native"}
    assert [r.id for r in again] == [r.id for r in first]
    assert [r.messages for r in again] == [r.messages for r in first]
    assert again[0].tools == first[0].tools and again[1].category == "edge"
    assert [r.source.line for r in again] == [1, 2]  # lines of the file read, lineage fields kept
    assert parse_record(dump_record(again[0])) == again[0]


# ---------------------------------------------------------------- Label Studio

HUMAN_FEEDBACK = "label-studio/annotation_templates__generative-ai__human-feedback-collection"


def _pairwise_export(real_fixtures: Path) -> list[dict]:
    task = json.loads((real_fixtures / f"{HUMAN_FEEDBACK}.task.json").read_text())
    out = []
    for tid, sel in ((1, "left"), (2, "right")):
        out.append(
            {
                "id": tid,
                "project": 7,
                "data": task["data"],
                "predictions": [],
                "annotations": [
                    {
                        "id": 100 + tid,
                        "completed_by": {"id": 1, "email": "ann@example.com"},
                        "was_cancelled": False,
                        "created_at": "2025-01-01T00:00:00Z",
                        "updated_at": "2025-01-01T00:00:00Z",
                        "lead_time": 3.0,
                        "result": [
                            {
                                "id": "r1",
                                "type": "pairwise",
                                "from_name": "comparison",
                                "to_name": "comparison",
                                "value": {"selected": sel},
                            }
                        ],
                    }
                ],
            }
        )
    out[1]["annotations"].append(
        {"id": 300, "was_cancelled": True, "result": [], "completed_by": {"id": 2, "email": "b@example.com"}}
    )
    return out


def test_label_studio_pairwise_left_right_mapping(real_fixtures, tmp_path):
    f = tmp_path / "export.json"
    f.write_text(json.dumps(_pairwise_export(real_fixtures)))
    data = json.loads((real_fixtures / f"{HUMAN_FEEDBACK}.task.json").read_text())["data"]
    assert detect_format(f) == "label_studio"
    recs, ctx = read(f)
    left, right = recs
    assert left.prompt[0].content == data["prompt"]
    assert (left.chosen[0].content, left.rejected[0].content) == (data["answer1"], data["answer2"])
    assert (right.chosen[0].content, right.rejected[0].content) == (data["answer2"], data["answer1"])
    assert (left.source.project, left.source.task, left.source.annotation, left.source.annotator) == (
        7,
        1,
        101,
        "ann@example.com",
    )
    (q,) = rows(ctx)  # the cancelled annotation is a unit, quarantined
    assert q["reason"] == "cancelled_annotation" and q["source"]["annotation"] == 300
    assert_conserved(recs, ctx)


def test_label_studio_json_min_made_by_the_sdk_converter(real_fixtures, tmp_path):
    from label_studio_sdk.converter import Converter

    export = tmp_path / "export.json"
    export.write_text(json.dumps(_pairwise_export(real_fixtures)))
    config = (real_fixtures / f"{HUMAN_FEEDBACK}.xml").read_text()
    Converter(config=config, project_dir=str(tmp_path), download_resources=False).convert_to_json_min(
        str(export), str(tmp_path / "min"), is_dir=False
    )
    f = tmp_path / "min" / "result.json"
    assert detect_format(f) == "label_studio_min"
    recs, ctx = read(f)
    data = json.loads((real_fixtures / f"{HUMAN_FEEDBACK}.task.json").read_text())["data"]
    chosen = {r.source.task: r.chosen[0].content for r in recs}
    assert chosen == {1: data["answer1"], 2: data["answer2"]}  # task 1 picked left, task 2 right
    assert all(r.prompt[0].content == data["prompt"] for r in recs)
    assert_conserved(recs, ctx)


def test_label_studio_real_exports(real_fixtures):
    ls = real_fixtures / "label-studio"
    (pw,), ctx = read(ls / "pairwise__annotations__1.json")  # selected: right -> text2 chosen
    task = json.loads((ls / "pairwise__annotations__1.json").read_text())
    assert pw.chosen[0].content == task["data"]["text2"] and pw.rejected[0].content == task["data"]["text1"]
    (chat,), _ = read(ls / "test_export_json_min__chat_data.json")  # chatmessage results -> a conversation
    assert [m.role for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    assert chat.messages[0].content == "hi" and chat.source.annotator == "test@example.com"
    (conv,), _ = read(ls / "annotation_templates__generative-ai__chatbot-assessment.task.json")
    assert len(conv.messages) == 8 and conv.messages[-1].role == "assistant"
    recs, ctx = read(ls / "classification_mixed__tasks.json")  # image tasks: nothing to learn from, accounted
    assert recs == [] and {q["reason"] for q in rows(ctx)} == {"no_text_data"}
    recs, ctx = read(ls / f"{HUMAN_FEEDBACK.split('/')[1]}.task.json")
    assert recs == [] and [q["reason"] for q in rows(ctx)] == ["unannotated"]


# ---------------------------------------------------------------- the real fixtures

EXPECTED = {  # file: (format, units in, records, {reason: count})
    "axolotl/alpaca.json": ("alpaca", 2, 2, {}),
    "axolotl/conversation.json": ("sharegpt", 1, 1, {}),
    "axolotl/conversation.missingturns.json": ("sharegpt", 1, 0, {"empty_turn": 1}),
    "data-juicer/alpaca-cot.jsonl": ("alpaca", 11, 10, {"empty_turn": 1}),
    "data-juicer/demo-dataset-annotation-human-preference.jsonl": (
        "unlabeled_pair",
        10,
        0,
        {"unlabeled_pair": 10},
    ),
    "data-juicer/demo-dataset-chatml.jsonl": ("openai", 4, 4, {}),
    "fastchat/mt_bench_question.jsonl": ("mtbench", 80, 80, {}),
    "fastchat/vicuna_bench_question.jsonl": ("mtbench", 80, 80, {}),
    "llama-factory/alpaca_zh_demo.json": ("alpaca", 1000, 1000, {}),
    "llama-factory/identity.json": ("alpaca", 91, 91, {}),
    "llama-factory/dpo_zh_demo.json": ("llamafactory_dpo", 300, 300, {}),
    "llama-factory/glaive_toolcall_en_demo.json": ("sharegpt", 300, 300, {}),
    "llama-factory/kto_en_demo.json": ("kto", 300, 300, {}),
    "llama-factory/v1_sft_demo.jsonl": ("llamafactory_v1", 500, 500, {}),
    "llama-factory/v1_dpo_demo.jsonl": ("llamafactory_v1", 10, 10, {}),
    "stanford-alpaca/seed_tasks.jsonl": ("seed_tasks", 175, 175, {}),
    "label-studio/pairwise__annotations__1.json": ("label_studio", 1, 1, {}),
    "label-studio/tests__data_manager__tasks_annotations_predictions.json": (
        "label_studio",
        6,
        0,
        {"no_text_data": 3, "unannotated": 3},
    ),
    "label-studio/tests__test_suites__samples__previous_export.json": (
        "label_studio",
        1,
        0,
        {"no_text_data": 1},
    ),
}
NOT_DATA = [
    "llama-factory/dataset_info.json",
    "label-studio/annotation_templates__generative-ai__llm-ranker__example.json",
]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_fixture_counts(real_fixtures, name):
    fmt, n_in, n_out, reasons = EXPECTED[name]
    path = real_fixtures / name
    assert detect_format(path) == fmt
    recs, ctx = read(path)
    assert (ctx.counters[f"in:{path}"], len(recs)) == (n_in, n_out)
    assert dict(Counter(q["reason"] for q in rows(ctx))) == reasons
    assert all(r.source.file == str(path) and r.source.format == fmt and r.source.line for r in recs)
    assert_conserved(recs, ctx)


def test_every_real_fixture_file_is_accounted_for(real_fixtures):
    """All data files together: units in == records + quarantined; the two non-data files raise clearly."""
    files = sorted(
        p for p in real_fixtures.rglob("*.json*") if str(p.relative_to(real_fixtures)) not in NOT_DATA
    )
    recs, ctx = read(files)
    assert len({k for k in ctx.counters if k.startswith("in:")}) == len(files)
    assert_conserved(recs, ctx)
    # the files in EXPECTED, plus one record each from the chatbot-assessment task, the dialogue-analysis
    # annotation and the chat export (the other Label Studio files hold image/classification tasks only)
    assert len(recs) == sum(v[2] for v in EXPECTED.values()) + 3
    for name in NOT_DATA:
        with pytest.raises(InputError, match="cannot tell the format"):
            read(real_fixtures / name, strict=True)


def test_glaive_tool_calls_and_observations(real_fixtures):
    path = real_fixtures / "llama-factory/glaive_toolcall_en_demo.json"
    raw = json.loads(path.read_text())
    recs, _ = read(path)
    froms = Counter(t["from"] for r in raw for t in r["conversations"])
    roles = Counter(m.role for r in recs for m in r.messages)
    calls = [tc for r in recs for m in r.messages for tc in (m.tool_calls or ())]
    assert roles["tool"] == froms["observation"] and len(calls) == froms["function_call"]
    assert roles["user"] == froms["human"] and roles["assistant"] == froms["gpt"] + froms["function_call"]
    first = next(t for t in raw[0]["conversations"] if t["from"] == "function_call")
    call = json.loads(first["value"])
    tc = next(m for m in recs[0].messages if m.tool_calls).tool_calls[0]
    assert tc.function.name == call["name"] and json.loads(tc.function.arguments) == call["arguments"]
    with_tools = [r for r in recs if r.tools]
    assert len(with_tools) == sum(1 for r in raw if r["tools"] not in ("", "[]"))
    assert json.loads(with_tools[0].tools)[0]["name"]


def test_known_duplicates_are_kept_for_dedup(real_fixtures):
    recs, _ = read(real_fixtures / "llama-factory/alpaca_zh_demo.json")
    raw = json.loads((real_fixtures / "llama-factory/alpaca_zh_demo.json").read_text())
    exact_dups = len(raw) - len({json.dumps(r, sort_keys=True) for r in raw})
    assert exact_dups > 0 and len(recs) == len(raw)
    assert len(recs) - len({r.id for r in recs}) >= exact_dups
    dpo, _ = read(real_fixtures / "llama-factory/dpo_zh_demo.json")
    assert len(dpo) == 300 and len({r.id for r in dpo}) < 300


def test_dpo_kto_v1_shapes(real_fixtures):
    lf = real_fixtures / "llama-factory"
    dpo, _ = read(lf / "dpo_zh_demo.json")
    raw = json.loads((lf / "dpo_zh_demo.json").read_text())
    assert dpo[0].chosen[0].content == raw[0]["chosen"]["value"] and dpo[0].prompt[-1].role == "user"
    assert sum(1 for r in dpo if r.prompt[0].role == "system") == sum(
        1 for r in raw if r["conversations"][0]["from"] == "system"
    )
    kto, _ = read(lf / "kto_en_demo.json")
    negatives = [r for r in kto if r.category == "negative"]
    assert len(negatives) == 150 and all(r.labels == {"kto": False} for r in negatives)
    assert all(r.labels == {"kto": True} and r.category == "typical" for r in kto if r not in negatives)
    v1, _ = read(lf / "v1_dpo_demo.jsonl")
    assert all(
        isinstance(r, PreferenceRecord) and len(r.chosen) == 1 and r.prompt[-1].role == "user" for r in v1
    )
    sft1, _ = read(lf / "v1_sft_demo.jsonl")
    assert sft1[0].messages[1].content.startswith("Hello! I am {{name}}")


def test_mtbench_and_seed_tasks(real_fixtures):
    mt, _ = read(real_fixtures / "fastchat/mt_bench_question.jsonl")
    assert mt[0].tags == ("writing",) and mt[0].category == "typical"
    assert [m.role for m in mt[0].messages] == ["user", "user"]  # prompts without answers
    assert any(
        m.role == "assistant" for r in mt for m in r.messages
    )  # complete reference answers interleaved
    seed, _ = read(real_fixtures / "stanford-alpaca/seed_tasks.jsonl")
    raw = [json.loads(line) for line in (real_fixtures / "stanford-alpaca/seed_tasks.jsonl").open()]
    assert len(seed) == sum(len(r["instances"]) for r in raw)  # one unit per instance


def test_spec_ref_and_unknown_format(tmp_path, repo):
    from curate.spec import load_spec

    spec = load_spec(repo / "specs" / "support-triage")
    recs, _ = read(DATA / "hh_rlhf.jsonl", spec=spec)
    assert {r.spec for r in recs} == {spec.ref}
    with pytest.raises(InputError, match="unknown format"):
        read(DATA / "hh_rlhf.jsonl", format="nope")
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "missing.jsonl")
    assert "openai" in FORMATS and "label_studio_min" in FORMATS


# ---------------------------------------------------------------- CLI


def _main():
    from curate.cli import main

    return main


def test_cli_import_json_summary_and_quarantine_file(tmp_path, real_fixtures):
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(
        _main(),
        [
            "import",
            str(DATA / "malformed.jsonl"),
            str(real_fixtures / "axolotl"),
            "--out-file",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["counts"] == {"in": 15, "records": 5, "quarantined": 10}
    assert doc["conservation"]["ok"] is True
    assert doc["quarantine"]["read/broken_line"] == 1
    assert {i["format"] for i in doc["inputs"]} == {"openai", "alpaca", "sharegpt"}
    lines = out.read_bytes().splitlines()
    assert len(lines) == 5 and all(parse_record(orjson.loads(x)) for x in lines)
    q = [json.loads(x) for x in Path(doc["quarantine_file"]).read_text().splitlines()]
    assert len(q) == 10 and q[0]["reason"] == "bad_json"


def test_cli_import_errors_are_one_line(tmp_path, real_fixtures):
    res = CliRunner().invoke(
        _main(),
        [
            "import",
            str(real_fixtures / "llama-factory/dataset_info.json"),
            "--out-file",
            str(tmp_path / "o.jsonl"),
            "--strict",
        ],
    )
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and "cannot tell the format" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
    res = CliRunner().invoke(
        _main(),
        ["import", str(DATA / "hh_rlhf.jsonl"), "--format", "bogus", "--out-file", str(tmp_path / "o.jsonl")],
    )
    assert (
        res.exit_code == 1
        and len(res.stderr.strip().splitlines()) == 1
        and "'bogus' is not one of" in res.stderr
    )
    # without --strict the undetectable file is quarantined, not fatal
    res = CliRunner().invoke(
        _main(),
        [
            "import",
            str(real_fixtures / "llama-factory/dataset_info.json"),
            "--out-file",
            str(tmp_path / "o.jsonl"),
            "--json",
        ],
    )
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["counts"]["records"] == 0 and doc["conservation"]["ok"]
    assert doc["quarantine"] == {"read/unknown_format": doc["counts"]["quarantined"]}


def test_records_are_valid_models(real_fixtures):
    """Records built by the fast path equal the same records validated from their dump."""
    for name in ("llama-factory/glaive_toolcall_en_demo.json", "llama-factory/v1_dpo_demo.jsonl"):
        recs, _ = read(real_fixtures / name)
        for r in recs[:50]:
            again = parse_record(dump_record(r))
            assert again == r and isinstance(again, SFTRecord | PreferenceRecord)


def test_fast_path_builds_the_same_records_as_the_checked_path():
    """Messages already in our shape skip our Python checks (pydantic builds them): same records either way."""
    from curate.readers.common import openai_messages, plain_messages, sft

    convs = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "content": '{"t": 3}', "tool_call_id": "c1", "name": "w"},
            {"role": "assistant", "content": "3 degrees."},
        ],
    ]
    src = {"file": "f.jsonl", "line": 1, "format": "openai"}
    for conv in convs:
        assert plain_messages(conv)
        fast = sft(conv, meta={}, source=src, spec=None)
        slow = sft(openai_messages(conv, "messages"), meta={}, source=src, spec=None)
        assert fast == slow and fast.id == slow.id
    not_plain = [
        [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}],  # empty turn
        [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "x"}],  # alias role
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [  # content null
                    {"type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            }
        ],
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [  # bad arguments
                    {"type": "function", "function": {"name": "w", "arguments": "{oops"}}
                ],
            }
        ],
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [  # dict arguments
                    {"type": "function", "function": {"name": "w", "arguments": {"a": 1}}}
                ],
            }
        ],
        [{"role": "user", "content": "Hi", "weight": 0}],  # unknown key
    ]
    for conv in not_plain:
        assert not plain_messages(conv)


def test_label_studio_tasks_made_by_curate_are_delegated_to_labeling_convert(tmp_path):
    """A task pushed by curate (data.record + curate_id + curate_kind) goes through curate.labeling.convert."""
    from curate.records import Message

    original = SFTRecord.build(
        messages=[
            Message(role="user", content="Cancel my plan."),
            Message(role="assistant", content="Done, I cancelled it."),
        ]
    )
    task = {
        "id": 5,
        "project": 2,
        "data": {
            "curate_id": original.id,
            "curate_spec": "support-triage@1",
            "curate_kind": "write",
            "record": dump_record(original),
            "messages": [{"role": "user", "content": "Cancel my plan."}],
        },
        "annotations": [
            {
                "id": 9,
                "completed_by": {"id": 1, "email": "w@example.com"},
                "was_cancelled": False,
                "created_at": "2025-01-01T00:00:00Z",
                "result": [
                    {
                        "from_name": "ideal",
                        "to_name": "prompt",
                        "type": "textarea",
                        "value": {"text": ["I can't cancel it myself; here is how you can."]},
                    }
                ],
            }
        ],
    }
    f = tmp_path / "export.json"
    f.write_text(json.dumps([task]))
    recs, ctx = read(f)
    (rec,) = recs
    assert rec.response_text() == "I can't cancel it myself; here is how you can."
    assert rec.labels.get("reviewed") is True and rec.source.annotator == "w@example.com"
    assert rec.source.file == str(f) and rec.source.parent == original.id
    assert_conserved(recs, ctx)


REASONS = [  # (format, object, reason, a word the detail names)
    ("openai", {"messages": "hello"}, "bad_field", "messages"),
    (
        "openai",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "unsupported_content",
        "image_url",
    ),
    (
        "llamafactory_v1",
        {
            "chosen_messages": [{"role": "user", "content": [{"type": "text", "value": "q"}]}],
            "rejected_messages": [{"role": "user", "content": [{"type": "text", "value": "q"}]}],
        },
        "no_assistant_turn",
        "assistant",
    ),
    (
        "llamafactory_dpo",
        {"conversations": [{"from": "human", "value": "q"}], "rejected": {"from": "gpt", "value": "a"}},
        "missing_chosen",
        "chosen",
    ),
    (
        "hh_rlhf",
        {"chosen": "Preamble\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"},
        "bad_transcript",
        "chosen",
    ),
    (
        "hh_rlhf",
        {
            "chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: more?",
            "rejected": "\n\nHuman: q\n\nAssistant: b",
        },
        "no_assistant_turn",
        "Assistant",
    ),
    (
        "sharegpt",
        {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{nope"}]},
        "bad_tool_call",
        "conversations[1]",
    ),
    ("sharegpt", {"conversations": [{"from": "narrator", "value": "q"}]}, "bad_role", "conversations[0]"),
    (
        "kto",
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "label": "maybe",
        },
        "bad_field",
        "label",
    ),
    ("seed_tasks", {"instruction": "Do it", "instances": []}, "missing_field", "instances"),
    ("prompt_completion", {"prompt": "q", "completion": None}, "missing_field", "completion"),
    ("preference", {"chosen": "a", "rejected": "b"}, "missing_field", "prompt"),
]


@pytest.mark.parametrize("fmt,obj,reason,word", REASONS, ids=[f"{r[0]}-{r[2]}" for r in REASONS])
def test_every_reason_code(tmp_path, fmt, obj, reason, word):
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(obj) + "\n")
    recs, ctx = read(f, format=fmt)
    assert recs == []
    (q,) = rows(ctx)
    assert q["reason"] == reason and word in q["detail"] and q["detail"].startswith(f"{f}:1: ")
    assert q["original"] == json.dumps(obj)
    assert_conserved(recs, ctx)


def test_csv_long_cells_and_tsv(tmp_path):
    long = "word " * 40_000  # 200k characters: over the csv module's default field limit
    f = tmp_path / "pc.csv"
    f.write_text(f'prompt,completion\n"Write a lot",{long}\n"Short?","Yes."\n')
    recs, ctx = read(f)
    assert [len(r.completion[0].content) for r in recs] == [len(long), 4]
    assert recs[0].prompt[0].role == "user" and recs[0].completion[0].role == "assistant"
    t = tmp_path / "chat.tsv"
    t.write_text(
        'messages\tcategory\n[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]\tedge\n'
    )
    (rec,), _ = read(t)
    assert rec.category == "edge" and rec.messages[1].content == "Yo"  # JSON cells are parsed
    assert_conserved(recs, ctx)


def test_trl_unpaired_kto_and_a_messages_file_with_a_class_label(tmp_path):
    f = tmp_path / "kto.jsonl"
    f.write_text(
        '{"prompt": "Hi", "completion": "Hello!", "label": true}\n'
        '{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", '
        '"content": "Go away."}], "label": false}\n'
    )
    assert detect_format(f) == "kto"
    good, bad = read(f)[0]
    assert (
        good.labels == {"kto": True} and good.category == "typical" and good.completion[0].content == "Hello!"
    )
    assert bad.labels == {"kto": False} and bad.category == "negative"
    g = tmp_path / "cls.jsonl"  # a string `label` is not KTO's
    g.write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], '
        '"label": "greeting"}\n'
    )
    assert detect_format(g) == "openai"


def test_ultrafeedback_binarized_shape(tmp_path):
    conv = lambda a: [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": a}]
    f = tmp_path / "uf.jsonl"
    f.write_text(
        json.dumps(
            {
                "prompt": "Name a prime.",
                "prompt_id": "x1",
                "chosen": conv("7"),
                "rejected": conv("8"),
                "messages": conv("7"),
                "score_chosen": 9.0,
            }
        )
        + "\n"
        + json.dumps(
            {"prompt": "Something else", "chosen": conv("7"), "rejected": conv("8"), "messages": conv("7")}
        )
        + "\n"
    )
    assert detect_format(f) == "preference"
    (rec,), ctx = read(f)
    assert [m.content for m in rec.prompt] == ["Name a prime."]
    assert (rec.chosen[0].content, rec.rejected[0].content) == ("7", "8")
    assert [q["reason"] for q in rows(ctx)] == ["prompt_mismatch"]


def test_native_fast_path_equals_record_from_native(real_fixtures):
    """Records written by curate are re-read in one pydantic call; the result equals records.record_from_native."""
    from curate.readers.shapes import _native_fast
    from curate.records import Source, record_from_native

    recs = []
    for name in (
        "llama-factory/glaive_toolcall_en_demo.json",
        "llama-factory/dpo_zh_demo.json",
        "llama-factory/kto_en_demo.json",
    ):
        recs += read(real_fixtures / name)[0][:40]
    src = {"file": "native.jsonl", "line": 3, "format": "native"}
    for r in recs:
        d = dump_record(r.model_copy(update={"source": r.source.model_copy(update={"annotator": "a@x"})}))
        fast = _native_fast(d, src, None)
        slow = record_from_native(
            {k: v for k, v in d.items() if k not in ("id", "kind")}, source=Source(**{**d["source"], **src})
        )
        assert fast is not None and fast == slow and fast.id == r.id
        assert fast.source.annotator == "a@x" and fast.source.file == "native.jsonl"


def test_empty_and_all_bad_files(tmp_path):
    empty, bad = tmp_path / "empty.jsonl", tmp_path / "bad.jsonl"
    empty.write_text("")
    bad.write_text("{'a': 1}\nnot json\n")
    recs, ctx = read([empty, bad])
    assert recs == [] and ctx.counters[f"in:{empty}"] == 0 and ctx.counters[f"in:{bad}"] == 2
    assert [q["reason"] for q in rows(ctx)] == ["python_literal", "bad_json"]
    assert detect_format(bad, default="none") == "none"
    with pytest.raises(InputError, match="no readable"):
        detect_format(empty)
    res = CliRunner().invoke(
        _main(), ["import", str(empty), str(bad), "--out-file", str(tmp_path / "o.jsonl"), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (
        doc["counts"] == {"in": 2, "records": 0, "quarantined": 2}
        and (tmp_path / "o.jsonl").read_bytes() == b""
    )
